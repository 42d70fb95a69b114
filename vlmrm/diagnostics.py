"""How well does a CLIP reward track the truth? Correlations, ROC-AUC and EPIC distance.

Given per-frame ground truth (the env's own reward, a success flag, a human label or any
number per frame) and the CLIP rewards of the same frames, :func:`diagnose` reports:

* **Pearson** ρ: linear agreement.
* **Spearman** ρ: rank agreement (what matters for RL up to monotone reshaping).
* **ROC-AUC** (binary labels only): the probability that a randomly chosen success frame
  gets a higher CLIP reward than a randomly chosen failure frame, ties counting ½
  (Mann–Whitney U / (n₊ n₋), from average ranks; no sklearn). 0.5 is chance.
* **EPIC distance** (Gleave et al. 2021, as used in the VLM-RM paper). EPIC compares
  rewards after *canonicalisation* that removes potential shaping:
  ``C(R)(s, a, s') = R(s, a, s') + E[γR(s', A, S') − R(s, A, S') − γR(S, A, S')]`` with
  ``S, S' ~ D_S`` and ``A ~ D_A``. A CLIP reward depends only on the frame of the state
  reached, ``R(s, a, s') = r(s')``, so the expectations are constants and
  ``C(R)(s, a, s') = r(s') − E_{S~D_S}[r(S)]`` for every γ: canonicalising is subtracting
  the mean. Here ``D_S`` is the uniform distribution over the scored frames (the frames
  of the video are the coverage distribution), so :func:`canonicalize` subtracts the
  mean over those frames. Then ``D_EPIC = D_ρ(C(R₁), C(R₂)) = sqrt((1 − ρ) / 2)`` with
  ρ the Pearson correlation of the canonicalised rewards over the same frames.
  D = 0: equivalent up to a positive affine map; ≈ 0.707: uncorrelated; 1: opposite.
  (Because Pearson ρ ignores shifts, for state-only rewards the EPIC distance equals
  the Pearson distance of the raw rewards; canonicalisation is still done explicitly so
  that the computation reads like the definition.) The ground truth is treated as a
  state reward in the same way, which is exact for success flags and for env rewards
  that depend only on the reached state.

Undefined statistics (a constant reward or label, a single class for ROC-AUC, fewer
than 3 frames) are NaN with a ``note`` saying why, never an exception.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from vlmrm.errors import ConfigError

#: Columns of a labels CSV that index frames instead of holding ground truth.
INDEX_COLUMNS = ("video", "frame", "time", "episode", "step", "terminated", "truncated")


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ConfigError(
            f"rewards and labels must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )
    return a, b


def canonicalize(rewards: Any, weights: Any | None = None) -> np.ndarray:
    """EPIC canonicalisation of a state-only reward over sampled states: ``r − E_D[r]``.

    ``weights`` is the sampling distribution over the frames (default uniform).
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if weights is None:
        return r - r.mean()
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != r.shape or (w < 0).any() or w.sum() <= 0:
        raise ConfigError("weights must be non-negative, one per frame, with a positive sum")
    return r - float((w * r).sum() / w.sum())


def pearson(x: Any, y: Any) -> float:
    """Pearson correlation; NaN if either input is constant or has fewer than 2 values."""
    a, b = _pair(x, y)
    if a.size < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den == 0.0 or not math.isfinite(den):
        return float("nan")
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when undefined."""
    a, b = _pair(x, y)
    return pearson(rankdata(a), rankdata(b))


def is_binary(labels: Any) -> bool:
    """True when all labels are 0/1 (bool success flags)."""
    v = np.asarray(labels, dtype=np.float64).reshape(-1)
    return v.size > 0 and bool(np.isin(v, (0.0, 1.0)).all())


def roc_auc(scores: Any, labels: Any) -> float:
    """ROC-AUC of ``scores`` for binary ``labels`` (Mann–Whitney with tie-averaged ranks).

    NaN when only one class is present. Raises :class:`ConfigError` for non-binary labels.
    """
    s, y = _pair(scores, labels)
    if not is_binary(y):
        raise ConfigError("roc_auc needs binary labels (0/1 or True/False)")
    pos = y == 1.0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def epic_distance(rewards_a: Any, rewards_b: Any, weights: Any | None = None) -> float:
    """EPIC distance of two state-only rewards over the same frames: ``sqrt((1 − ρ)/2)``.

    ρ is the Pearson correlation of the canonicalised rewards (see the module docstring);
    NaN when either is constant.
    """
    a, b = _pair(rewards_a, rewards_b)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        ca, cb = canonicalize(a, w), canonicalize(b, w)
        cov = float((w * ca * cb).sum())
        den = math.sqrt(float((w * ca * ca).sum()) * float((w * cb * cb).sum()))
        rho = cov / den if den > 0 else float("nan")
    else:
        rho = pearson(canonicalize(a), canonicalize(b))
    if not math.isfinite(rho):
        return float("nan")
    return math.sqrt(max(0.0, (1.0 - min(1.0, rho)) / 2.0))


@dataclass
class RewardDiagnostics:
    """Agreement of one reward curve with one ground-truth column.

    ``n`` counts the frames used (pairs where both values are finite). ``roc_auc`` is NaN
    for non-binary labels. ``note`` says why a statistic is NaN, when one is.
    """

    label: str
    n: int
    pearson: float
    spearman: float
    roc_auc: float
    epic_distance: float
    binary: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(rewards: Any, labels: Any, label: str = "label") -> RewardDiagnostics:
    """Compare CLIP rewards with per-frame ground truth (frames with a NaN in either are dropped)."""
    r, y = _pair(rewards, labels)
    ok = np.isfinite(r) & np.isfinite(y)
    r, y = r[ok], y[ok]
    binary = is_binary(y)
    notes = []
    nan = float("nan")
    if r.size < 3:
        notes.append(f"only {r.size} frames with labels")
        return RewardDiagnostics(label, int(r.size), nan, nan, nan, nan, binary, "; ".join(notes))
    if np.ptp(y) == 0:
        notes.append("labels are constant")
    if np.ptp(r) == 0:
        notes.append("rewards are constant")
    auc = nan
    if binary:
        auc = roc_auc(r, y)
        if not math.isfinite(auc) and np.ptp(y) != 0:
            notes.append("one class only")
    return RewardDiagnostics(
        label=label,
        n=int(r.size),
        pearson=pearson(r, y),
        spearman=spearman(r, y),
        roc_auc=auc,
        epic_distance=epic_distance(r, y),
        binary=binary,
        note="; ".join(notes),
    )


def load_labels(path: str | os.PathLike, columns: str | Sequence[str] | None = None):
    """Read a labels CSV into a DataFrame, checking it is usable.

    The CSV has one row per frame and one or more numeric ground-truth columns (bools
    are read as 0/1). Optional index columns: ``video`` (which video a row belongs to;
    matched against the path, file name or stem), ``frame`` (the frame index; without
    it, row *i* of a video is frame *i*). ``columns`` picks the ground-truth columns;
    default: every numeric column not in :data:`INDEX_COLUMNS`.

    Raises:
        ConfigError: missing/empty/unparsable file, unknown or non-numeric columns.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"labels file {str(path)!r} does not exist; pass labels=<path to a CSV with one row per frame>"
        )
    try:
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise ConfigError(
            f"labels file {str(path)!r} is empty; it needs a header row and one row per frame"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"labels file {str(path)!r} is not a readable CSV: {msg}") from None
    if len(df) == 0:
        raise ConfigError(f"labels file {str(path)!r} has a header but no rows")
    df.columns = [str(c).strip() for c in df.columns]
    if isinstance(columns, str):
        columns = [columns]
    if columns is None:
        columns = [c for c in df.columns if c not in INDEX_COLUMNS and _numeric(df[c])]
        if not columns:
            raise ConfigError(
                f"labels file {str(path)!r} has no numeric ground-truth column (columns: {list(df.columns)}); "
                "add e.g. a 'success' (0/1) or 'reward' column"
            )
    else:
        columns = list(columns)
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ConfigError(
                f"labels file {str(path)!r} has no column {missing[0]!r}; its columns are {list(df.columns)}"
            )
        bad = [c for c in columns if not _numeric(df[c])]
        if bad:
            raise ConfigError(
                f"label column {bad[0]!r} in {str(path)!r} is not numeric (e.g. {df[bad[0]].iloc[0]!r}); "
                "use numbers or True/False"
            )
    if "frame" in df.columns and not _numeric(df["frame"]):
        raise ConfigError(f"the 'frame' column of {str(path)!r} must hold integer frame indices")
    out = df[[c for c in ("video", "frame") if c in df.columns] + columns].copy()
    for c in columns:
        out[c] = pd.to_numeric(out[c].map(_bool_to_num), errors="coerce").astype(np.float64)
    out.attrs["label_columns"] = columns
    out.attrs["path"] = str(path)
    return out


def _bool_to_num(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return 1.0 if v.strip().lower() == "true" else 0.0
    return v


def _numeric(col) -> bool:
    import pandas as pd

    vals = col.dropna().map(_bool_to_num)
    if len(vals) == 0:
        return False
    return bool(pd.to_numeric(vals, errors="coerce").notna().all())


def video_keys(name: str) -> set[str]:
    """Names under which a labels CSV may refer to a video: path, resolved path, file name, stem."""
    p = Path(name)
    keys = {name, p.name, p.stem}
    try:
        keys.add(str(p.resolve()))
    except OSError:
        pass
    return keys


def labels_for_video(table, video: str, frames: np.ndarray) -> dict[str, np.ndarray] | None:
    """Ground truth aligned with the scored ``frames`` of ``video``: ``{column: (N,) values}``.

    Rows are selected by the ``video`` column when the table has one (``None`` when no
    row matches); frames without a label get NaN.
    """
    df = table
    if "video" in df.columns:
        keys = video_keys(video)
        df = df[df["video"].astype(str).map(lambda v: bool(video_keys(v) & keys))]
        if len(df) == 0:
            return None
    columns = df.attrs.get("label_columns") or table.attrs["label_columns"]
    frames = np.asarray(frames, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    if "frame" in df.columns:
        fidx = df["frame"].to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(fidx)):
            raise ConfigError("the 'frame' column of the labels file has empty cells")
        fidx = fidx.astype(np.int64)
        if len(np.unique(fidx)) != len(fidx):
            raise ConfigError(
                f"labels for {video!r} repeat frame indices; add a 'video' column when one file labels several videos"
            )
        pos = {int(f): i for i, f in enumerate(fidx)}
        take = np.array([pos.get(int(f), -1) for f in frames])
    else:
        take = np.where(frames < len(df), frames, -1)
    for c in columns:
        vals = df[c].to_numpy(dtype=np.float64)
        col = np.full(frames.shape, np.nan)
        hit = take >= 0
        col[hit] = vals[take[hit]]
        out[c] = col
    return out


def diagnose_scores(scores, labels: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Diagnostics of every (goal, baseline, α) curve of a :class:`~vlmrm.scoring.VideoScores`
    against every ground-truth column: one dict per (combination, column)."""
    from vlmrm.scoring.scores import prompt_label

    rows = []
    for g, b, a, r in scores.variants():
        for col, y in labels.items():
            d = diagnose(r, y, label=col)
            rows.append(
                {
                    "video": scores.video,
                    "goal": prompt_label(g),
                    "baseline": prompt_label(b),
                    "alpha": a,
                    **d.as_dict(),
                }
            )
    return rows
