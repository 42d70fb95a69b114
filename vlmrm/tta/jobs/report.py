"""The report of a TTA run: zero-shot vs adapted metrics, ``metrics.json`` and a table.

Each task computes its own metrics (in its ``run`` module) and hands them to
:func:`save_metrics`, so every task's ``metrics.json`` and table look alike.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlmrm.runtime.atomic import atomic_write_json
from vlmrm.runtime.console import make_console
from vlmrm.tta.jobs.results import RESULTS

METRICS = "metrics.json"


def print_table(
    title: str, rows: list[tuple], extra: str = "", columns: tuple[str, ...] = ("zero-shot", "RLCF")
) -> None:
    """A rich table of ``(metric, zero-shot, [TPT,] RLCF)`` rows with RLCF − zero-shot."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for col in columns:
        table.add_column(col, justify="right")
    table.add_column("Δ", justify="right")
    for name, *vals in rows:
        table.add_row(name, *(f"{v:.2f}" for v in vals), f"{vals[-1] - vals[0]:+.2f}")
    console = make_console()
    console.print(table)
    if extra:
        console.print(extra)


def save_metrics(
    out: Path,
    metrics: dict[str, Any],
    settings: Any,
    seconds: list[float],
    unit: str,
    title: str,
    rows: list[tuple],
    columns: tuple[str, ...] = ("zero-shot", "RLCF"),
) -> dict[str, Any]:
    """``metrics`` plus the time per ``unit`` (of this session) and the settings: written to
    ``metrics.json``, printed as a table (``title``, ``rows``) and returned."""
    metrics = {
        **metrics,
        "seconds_per_sample": (sum(seconds) / len(seconds)) if seconds else None,
        "settings": asdict(settings),
    }
    atomic_write_json(out / METRICS, metrics)
    speed = f"{metrics['seconds_per_sample']:.3f} s/{unit} this session" if seconds else "all resumed"
    print_table(title, rows, f"{speed}; results: {os.fspath(out / RESULTS)}", columns)
    return metrics
