"""IQM over seeds and its stratified bootstrap interval: rliable when it imports, else scipy.

The interquartile mean (the mean of the middle 50 % of runs, ``trim_mean(x, 0.25)``) and
a 95 % percentile bootstrap interval over runs are what rliable (Agarwal et al., 2021,
"Deep RL at the edge of the statistical precipice") made the field's convention for few
seeds. A sweep setting is one task, so the stratified bootstrap resamples the seeds of
each setting (and of each evaluation step, for the curves) with replacement.

rliable is the optional ``study`` extra; it needs ``arch`` < 8, which does not import
with pandas 3 (the extra pins ``pandas<3`` for that reason). Without an importable
rliable the same quantities come from ``scipy.stats`` (``trim_mean`` and ``bootstrap``,
percentile method) with a one-line notice: the IQM is identical, the interval ends differ
only by resampling noise (another random stream).

Both paths are reproducible: ``seed`` and ``reps`` fix the resampling. rliable draws its
resamples from NumPy's *global* generator (``StratifiedBootstrap.update_indices`` calls
``np.random.choice``), so it is seeded here and its previous state restored afterwards.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vlmrm.study.settings import CONFIDENCE

#: Why the study is computing without rliable (None: rliable imports), found once.
_FALLBACK: list[str | None] = []


def rliable_problem() -> str | None:
    """``None`` when rliable imports, else a one-line reason (cached for the process)."""
    if not _FALLBACK:
        try:
            from rliable import library, metrics  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any failure means: use scipy
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            _FALLBACK.append(f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": "))
        else:
            _FALLBACK.append(None)
    return _FALLBACK[0]


def backend() -> str:
    """``rliable`` or ``scipy``: what computes the intervals in this process."""
    return "rliable" if rliable_problem() is None else "scipy"


def fallback_notice() -> str | None:
    """The one line printed when the study falls back to scipy (None with rliable)."""
    problem = rliable_problem()
    if problem is None:
        return None
    if problem.startswith(("ModuleNotFoundError", "ImportError")):
        fix = "pip install 'vlmrm[study]' for rliable"
    else:  # installed but broken: arch 7 under pandas 3
        fix = "rliable 1.2 needs arch<8, which does not import with pandas 3: pip install 'pandas<3'"
    return (
        f"note: rliable is not importable ({problem}); IQM and bootstrap intervals computed "
        f"with scipy.stats instead ({fix})"
    )


def iqm(values: np.ndarray, axis: int | None = 0) -> np.ndarray | float:
    """Interquartile mean: the mean after cutting 25 % of the values at each end."""
    from scipy.stats import trim_mean

    return trim_mean(values, 0.25, axis=axis)


@dataclass
class Estimate:
    """IQM with its bootstrap interval, one value per column (step) of the input."""

    iqm: np.ndarray
    low: np.ndarray
    high: np.ndarray


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _rliable(scores: np.ndarray, reps: int, seed: int) -> Estimate:
    from rliable import library, metrics

    n, t = scores.shape
    data = scores.reshape(n, 1, t)  # runs × tasks (one: the setting) × steps

    def per_step(x: np.ndarray) -> np.ndarray:
        if x.shape[-1] == 1:
            return np.array([metrics.aggregate_iqm(x[..., 0])])
        # aggregate_iqm (a trimmed mean over runs and tasks) of every step in one call:
        # calling it step by step costs a Python loop per resample
        return np.asarray(iqm(x.reshape(-1, x.shape[-1]), axis=0))

    with _seeded_global_rng(seed):
        point, interval = library.get_interval_estimates(
            {"x": data}, per_step, reps=reps, confidence_interval_size=CONFIDENCE,
        )  # (no random_state: the resampling ignores it, and arch warns that it is deprecated)
    ci = np.asarray(interval["x"], dtype=np.float64).reshape(2, t)
    return Estimate(np.asarray(point["x"], np.float64), ci[0], ci[1])


def _scipy(scores: np.ndarray, reps: int, seed: int) -> Estimate:
    from scipy import stats

    rng = np.random.default_rng(seed)
    # scipy >= 1.15 names the generator rng=, older versions random_state=
    rng_key = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    point = np.asarray(iqm(scores, axis=0), np.float64)
    low, high = np.empty_like(point), np.empty_like(point)
    for k in range(scores.shape[1]):  # each step its own stratum, as in rliable
        column = scores[:, k]
        if np.ptp(column) == 0:  # every resample is the same value
            low[k] = high[k] = column[0]
            continue
        res = stats.bootstrap(
            (column,), lambda x, axis: iqm(x, axis=axis), n_resamples=reps, vectorized=True,
            method="percentile", confidence_level=CONFIDENCE, **{rng_key: rng},
        )
        low[k], high[k] = res.confidence_interval
    return Estimate(point, low, high)


def estimate(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> Estimate:
    """IQM over runs (axis 0) and its 95 % stratified bootstrap interval, per column.

    ``scores`` is ``(runs,)`` or ``(runs, steps)`` without missing values. With fewer
    than 2 runs there is nothing to resample: the interval is NaN.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    n, t = scores.shape
    if n == 0:
        nan = np.full(t, math.nan)
        return Estimate(nan, nan.copy(), nan.copy())
    if n < 2:
        nan = np.full(t, math.nan)
        return Estimate(scores[0].copy(), nan, nan.copy())
    if rliable_problem() is None:
        return _rliable(scores, reps, seed)
    return _scipy(scores, reps, seed)
