"""From a read sweep to the study's numbers: one row per setting and metric, and the curves.

A *setting* is one combination of the grouping keys (the swept settings other than
``seed`` by default); its *seeds* are its done jobs that have a final evaluation. Jobs
still pending, running or pre-empted make the row ``partial``; failed jobs are counted
and listed, never averaged in. A setting none of whose jobs has finished yet keeps its
rows, with ``n = 0`` and no numbers, so that the table shows what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.study import statistics
from vlmrm.study.reading import UNFINISHED, Job, Sweep, check_by, group_jobs
from vlmrm.study.settings import DEFAULT_METRICS

#: The CSV's columns after the metric and the setting columns.
STAT_COLUMNS = ("n", "iqm", "ci_low", "ci_high", "mean", "std", "median", "partial", "failed")


@dataclass
class Row:
    """One setting's final evaluations of one metric, aggregated over its seeds."""

    metric: str
    setting: dict[str, str]
    values: list[float]
    iqm: float
    ci_low: float
    ci_high: float
    unfinished: int = 0
    failed: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (ddof=1; NaN for one seed)."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else math.nan

    @property
    def partial(self) -> bool:
        return self.unfinished > 0

    def record(self) -> dict[str, Any]:
        """The row as the CSV writes it: metric, setting columns, then :data:`STAT_COLUMNS`."""
        return {"metric": self.metric, **self.setting, "n": self.n, "iqm": self.iqm,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "mean": self.mean,
                "std": self.std, "median": self.median, "partial": self.partial,
                "failed": self.failed}


@dataclass
class Curve:
    """One setting's evaluation curve of one metric: IQM over seeds at each step, and its band."""

    metric: str
    setting: dict[str, str]
    steps: np.ndarray
    estimate: statistics.Estimate
    seeds: int


@dataclass
class Study:
    """Everything a study reports about one sweep."""

    sweep: Sweep
    by: list[str]
    metrics: list[str]
    rows: list[Row]
    curves: list[Curve]
    reps: int
    seed: int
    backend: str
    #: jobs listed rather than aggregated: (job, why)
    left_out: list[tuple[Job, str]] = field(default_factory=list)


def _value(record: dict[str, Any] | None, metric: str) -> float | None:
    value = None if record is None else record.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _usable(sweep: Sweep) -> list[Job]:
    """Done jobs with a final evaluation; one clear line when there is none at all."""
    usable = [j for j in sweep.jobs if j.state == "done" and j.final is not None]
    if usable:
        return usable
    where = sweep.folder
    if not sweep.jobs:
        raise ConfigError(f"{where}/sweep.json lists no jobs; run the sweep first")
    done = [j for j in sweep.jobs if j.state == "done"]
    if done:
        raise ConfigError(
            f"no finished job of {where} has a final evaluation ({done[0].label()}: {done[0].problem}); "
            "train with eval.episodes >= 1 so that each run ends with one"
        )
    if sweep.count(*UNFINISHED):
        raise ConfigError(
            f"no job of {where} has finished yet ({sweep.states()}); run the study again once one is done"
        )
    first = next(j for j in sweep.jobs if j.state == "failed")
    raise ConfigError(
        f"every job of {where} failed ({first.label()}: {first.error or 'no error line'}); fix the "
        f"cause, then run the failed jobs again: python -m vlmrm.train -m resume={where}"
    )


def _metrics(usable: list[Job], asked: list[str] | None) -> list[str]:
    reported = [m for m in (asked or DEFAULT_METRICS) if any(_value(j.final, m) is not None for j in usable)]
    if asked:
        missing = [m for m in asked if m not in reported]
        if missing:
            raise ConfigError(
                f"metric={missing[0]}: no finished job reports it (a ground-truth reward has no "
                "clip_return; success_rate needs an env that reports success); leave metric= out "
                "to use what the runs report"
            )
    if not reported:
        raise ConfigError("the finished jobs' final evaluations report no return; check their evaluations.jsonl")
    return reported


def _curve(metric: str, setting: dict[str, str], jobs: list[Job], reps: int, seed: int) -> Curve | None:
    """IQM over seeds at each evaluation step, every seed interpolated onto the common steps.

    The steps of all seeds are pooled and kept where every seed has been evaluated (from
    the latest first step to the earliest last one), so nothing is extrapolated; with the
    same ``eval.every`` (the usual case) the seeds share their steps and nothing is
    interpolated either.
    """
    series = []
    for job in jobs:
        points = [(int(r["step"]), v) for r in job.evaluations if (v := _value(r, metric)) is not None]
        if points:
            series.append(np.array(points, dtype=np.float64))
    if not series:
        return None
    lo = max(s[0, 0] for s in series)
    hi = min(s[-1, 0] for s in series)
    steps = np.unique(np.concatenate([s[:, 0] for s in series]))
    steps = steps[(steps >= lo) & (steps <= hi)]
    if steps.size == 0:
        return None
    scores = np.stack([np.interp(steps, s[:, 0], s[:, 1]) for s in series])
    return Curve(metric, setting, steps, statistics.estimate(scores, reps, seed), len(series))


def study(sweep: Sweep, by: list[str] | None, metrics: list[str] | None, reps: int, seed: int) -> Study:
    """Group the sweep's jobs and aggregate each group's final evaluations and curves."""
    keys = check_by(sweep, by)
    usable = _usable(sweep)
    chosen = _metrics(usable, metrics)
    left_out = [(j, f"failed: {j.error or 'no error line'}") for j in sweep.jobs if j.state == "failed"]
    left_out += [(j, j.problem or "no final evaluation") for j in sweep.jobs if j.state == "done" and j.final is None]
    rows, curves = [], []
    groups = group_jobs(sweep, keys)
    for metric in chosen:
        for setting, jobs in groups:
            finished = [j for j in jobs if j.state == "done" and j.final is not None]
            done = [j for j in finished if _value(j.final, metric) is not None]
            if finished and not done:
                continue  # this setting's runs do not report the metric (no CLIP reward)
            # a setting with no finished job yet keeps its row (n=0), so the CSV shows it
            values = [v for j in done if (v := _value(j.final, metric)) is not None]
            est = statistics.estimate(np.array(values), reps, seed)
            rows.append(Row(
                metric, setting, values, float(est.iqm[0]), float(est.low[0]), float(est.high[0]),
                unfinished=sum(j.state in UNFINISHED for j in jobs),
                failed=sum(j.state == "failed" for j in jobs),
            ))
            curve = _curve(metric, setting, done, reps, seed)
            if curve is not None:
                curves.append(curve)
    return Study(sweep, keys, chosen, rows, curves, reps, seed, statistics.backend(), left_out)
