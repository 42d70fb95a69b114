"""Settings of ``python -m vlmrm.study`` (torch-free: ``--help`` and bad settings answer at once).

Only the spelling of the settings is checked here; whether the folder really is a sweep
folder, and whether ``by=`` names a swept setting, is checked when ``sweep.json`` is read
(:mod:`vlmrm.study.reading`), still before anything is computed or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrm.checks import check_int, check_out_dir
from vlmrm.errors import ConfigError

#: The final-evaluation quantities a study can aggregate (keys of ``evaluations.jsonl``).
METRICS = ("gt_return", "clip_return", "success_rate")
#: What ``metric=`` defaults to: each of these that some finished job reports.
DEFAULT_METRICS = ("gt_return", "clip_return")
#: Coverage of the bootstrap interval.
CONFIDENCE = 0.95


def key_list(name: str, value: Any) -> list[str]:
    """A list of names from ``a,b``, ``[a,b]`` or one name; empty entries are refused."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if items is None or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{name} must be setting names like {name}=reward.alpha,goal, got {value!r}")
    items = [v.strip().lstrip("+") for v in items]
    if not items or any(not v for v in items):
        raise ConfigError(f"{name}={value!r} has an empty name; write {name}=KEY or {name}=KEY1,KEY2")
    return list(dict.fromkeys(items))


@dataclass
class StudySettings:
    """Settings of ``python -m vlmrm.study``."""

    sweep: Any = None
    """The sweep folder: <out>/multirun/<name>/, the one holding sweep.json (given bare)."""
    by: Any = None
    """Group the jobs by these swept settings (by=reward.alpha or by=reward.alpha,goal);
    default: every swept setting other than seed, so each group's jobs differ only in seed."""
    metric: Any = None
    """Which final-evaluation returns to aggregate: gt_return, clip_return, success_rate, or a
    list (metric=gt_return,clip_return); default: gt_return and clip_return, those reported."""
    out: str | None = None
    """Where study.csv, curves.png and study.html go (default: the sweep folder)."""
    reps: int = 2000
    """Bootstrap resamples of each interval (more: steadier interval ends, slower)."""
    seed: int = 0
    """Seed of the bootstrap resampling: the same seed and reps give the same intervals."""

    def validate(self) -> None:
        if self.sweep is None:
            folders = []
        else:
            folders = list(self.sweep) if isinstance(self.sweep, (list, tuple)) else [self.sweep]
        if not folders:
            raise ConfigError(
                "no sweep folder given; pass the folder a -m sweep wrote, e.g. "
                "python -m vlmrm.study runs/multirun/alpha-grid"
            )
        if len(folders) > 1 or not isinstance(folders[0], str):
            raise ConfigError(f"one sweep folder at a time, got {folders!r}; run the study once per sweep")
        self.sweep = folders[0]
        if not Path(self.sweep).is_dir():
            what = "is a file" if Path(self.sweep).exists() else "does not exist"
            raise ConfigError(
                f"{self.sweep!r} {what}; pass a sweep folder (<out>/multirun/<name>/, holding sweep.json)"
            )
        self.by = key_list("by", self.by) or None
        metrics = key_list("metric", self.metric)
        for m in metrics:
            if m not in METRICS:
                raise ConfigError(f"metric={m!r} is not one of: {', '.join(METRICS)}")
        self.metric = metrics or None
        if self.out is not None:
            self.out = check_out_dir(self.out)
        self.reps = check_int("reps", self.reps, 100)
        self.seed = check_int("seed", self.seed, 0)
