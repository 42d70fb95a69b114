"""Hydra-style sweeps of ``python -m vlmrm.train -m``: one run per combination of values.

``-m seed=0,1,2 reward.alpha=0,0.5`` is Hydra's multirun grammar, parsed by Hydra's own
override parser (so ``seed=range(0,3)`` and ``agent=sac,td3`` work too): every
combination of the swept values is one job, run one after the other, each in its own run
folder, and :func:`summary_table` prints one row per job at the end. Free-text keys
(``goal``, ``baseline``, ``out``...) are never swept: a comma there is part of the text.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from vlmrm.errors import ConfigError


@dataclass
class Job:
    """One combination of a sweep: its swept values and its full argument list."""

    index: int
    swept: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.swept.items()) or "(no swept keys)"


def _sweep_values(arg: str, text_keys: frozenset[str]) -> tuple[str, list[str]] | None:
    """``(key, values)`` when ``arg`` is a sweep (``seed=0,1``), else ``None``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    key, sep, value = arg.partition("=")
    if not sep or arg.startswith("~") or key.lstrip("+").rsplit(".", 1)[-1] in text_keys:
        return None
    try:
        override = OverridesParser.create().parse_overrides([arg])[0]
    except HydraException:
        return None
    if not override.is_sweep_override():
        return None
    try:
        values = list(override.sweep_string_iterator())
    except HydraException as exc:
        raise ConfigError(f"cannot sweep {arg!r}: {str(exc).splitlines()[0]}") from None
    if not values:
        raise ConfigError(f"{arg!r} sweeps no value")
    return key, values


def expand_sweep(argv: Sequence[str], text_keys: frozenset[str] = frozenset()) -> list[Job]:
    """Every combination of the swept values in ``argv`` (the last swept key varies fastest)."""
    fixed: list[tuple[int, str]] = []
    swept: list[tuple[int, str, list[str]]] = []
    for i, arg in enumerate(argv):
        found = _sweep_values(arg, text_keys)
        if found is None:
            fixed.append((i, arg))
        else:
            swept.append((i, *found))
    jobs = []
    for n, combo in enumerate(itertools.product(*(values for _, _, values in swept))):
        args = dict(fixed)
        for (i, key, _), value in zip(swept, combo, strict=True):
            args[i] = f"{key}={value}"
        job = Job(n, {key.lstrip("+"): value for (_, key, _), value in zip(swept, combo, strict=True)},
                  [args[i] for i in sorted(args)])
        if len(swept) and any(a.split("=", 1)[0] == "run_name" for a in job.argv):
            job.argv = [f"{a}-{n}" if a.split("=", 1)[0] == "run_name" else a for a in job.argv]
        jobs.append(job)
    return jobs


def summary_table(jobs: Sequence[Job], results: Sequence[object]):
    """A rich table: one row per job, its swept values, steps, final returns and run folder."""
    from rich.table import Table

    table = Table(title=f"sweep: {len(jobs)} runs")
    for column in ("job", "settings", "steps", "gt return", "CLIP return", "run"):
        table.add_column(column, justify="right" if column in ("job", "steps") else "left")
    for job, result in zip(jobs, results, strict=False):
        final = getattr(result, "final_eval", None) or {}
        table.add_row(
            str(job.index), job.label, str(getattr(result, "steps", "")),
            _fmt(final.get("gt_return")), _fmt(final.get("clip_return")), str(getattr(result, "run_dir", "")),
        )
    return table


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"
