"""The tables ``python -m vlmrm.score`` prints: rewards per video, diagnostics, failures."""

from __future__ import annotations

import math
from typing import Any

from vlmrm.scoring.outputs import ScoreRun
from vlmrm.scoring.scores import base_name, short


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "–" if not math.isfinite(x) else f"{x:.{digits}f}"
    return str(x)


def _prompt_columns(table: Any, rows: list[dict[str, Any]]) -> tuple[bool, bool]:
    """Add goal/baseline columns only when several were scored; say which were added."""
    multi_goal = len({r["goal"] for r in rows}) > 1
    multi_base = len({r["baseline"] for r in rows}) > 1
    table.add_column("video", overflow="fold")
    if multi_goal:
        table.add_column("goal", overflow="fold")
    if multi_base:
        table.add_column("baseline", overflow="fold")
    return multi_goal, multi_base


def _prompt_cells(
    row: dict[str, Any], multi: tuple[bool, bool], widths: tuple[int, int]
) -> list[str]:
    cells = [base_name(row["video"])]
    if multi[0]:
        cells.append(short(row["goal"], widths[0]))
    if multi[1]:
        cells.append(short(row["baseline"], widths[1]))
    return cells


def summary_table(summary: list[dict[str, Any]]) -> Any:
    """Mean / min / max / argmax frame per video and combination."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title="CLIP reward per video", title_justify="left")
    multi = _prompt_columns(t, summary)
    for name in ("α", "frames", "mean", "min", "max", "argmax frame"):
        t.add_column(name, justify="right")
    for r in summary:
        cells = _prompt_cells(r, multi, (40, 30)) + [
            f"{r['alpha']:g}",
            str(r["n_frames"]),
            _fmt(r["mean"]),
            _fmt(r["min"]),
            _fmt(r["max"]),
            str(r["argmax_frame"]),
        ]
        t.add_row(*(Text(c) for c in cells))  # Text: no markup parsing of paths/prompts
    return t


def diagnostics_table(diags: list[dict[str, Any]]) -> Any:
    """How well the reward tracks each ground-truth column."""
    from rich.table import Table
    from rich.text import Text

    any_note = any(d["note"] for d in diags)
    t = Table(
        title="Does the reward track the ground truth?",
        title_justify="left",
        caption="ROC-AUC: 0.5 = chance; EPIC distance: 0 = same up to affine map, 0.71 = unrelated",
    )
    multi = _prompt_columns(t, diags)
    t.add_column("α", justify="right", no_wrap=True)
    t.add_column("label", no_wrap=True)
    for name in ("n", "pearson", "spearman", "ROC-AUC", "EPIC"):
        t.add_column(name, justify="right", no_wrap=True)
    if any_note:
        t.add_column("note", overflow="fold")
    for d in diags:
        cells = _prompt_cells(d, multi, (30, 24)) + [
            f"{d['alpha']:g}",
            d["label"],
            str(d["n"]),
            _fmt(d["pearson"], 3),
            _fmt(d["spearman"], 3),
            _fmt(d["roc_auc"], 3),
            _fmt(d["epic_distance"], 3),
        ]
        if any_note:
            cells.append(d["note"])
        t.add_row(*(Text(c) for c in cells))
    return t


def print_report(result: ScoreRun, console: Any, err: Any) -> None:
    """Rich tables: reward summary per video/combination, diagnostics, failures, files."""
    if result.summary:
        console.print(summary_table(result.summary))
    if result.diagnostics:
        console.print(diagnostics_table(result.diagnostics))
    if result.files:
        console.print(
            "wrote: " + ", ".join(result.files), highlight=False, markup=False, soft_wrap=True
        )
    if result.failures:
        n_bad = len({v for v, _ in result.failures})
        err.print(f"[red]{n_bad} video(s) had problems:[/red]", markup=True)
        for v, e in result.failures:
            err.print(f"  {v}: {e}", highlight=False, markup=False, soft_wrap=True)
