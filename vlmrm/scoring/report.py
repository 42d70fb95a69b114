"""The tables ``python -m vlmrm.score`` prints: rewards per video, diagnostics, failures.

Each table is first laid out as a :class:`TableSpec` (headers and text cells), then drawn
by rich for the terminal or as HTML for ``report=html``
(:mod:`vlmrm.scoring.html_report`), so both reports always show the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vlmrm.scoring.scores import ScoreRun, base_name, short

SUMMARY_TITLE = "CLIP reward per video"
DIAGNOSTICS_TITLE = "Does the reward track the ground truth?"
DIAGNOSTICS_CAPTION = (
    "ROC-AUC: 0.5 = chance; EPIC distance: 0 = same up to affine map, 0.71 = unrelated"
)


@dataclass
class Column:
    """A table column: its header and how rich lays it out (numbers right-aligned)."""

    name: str
    numeric: bool = False
    no_wrap: bool = False

    @property
    def fold(self) -> bool:
        return not self.numeric and not self.no_wrap


@dataclass
class TableSpec:
    """A table as text: title, columns, one list of cells per row, optional caption."""

    title: str
    columns: list[Column] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    caption: str | None = None


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "–" if not math.isfinite(x) else f"{x:.{digits}f}"
    return str(x)


def _prompt_columns(rows: list[dict[str, Any]]) -> tuple[list[Column], tuple[bool, bool]]:
    """The video column, plus goal/baseline columns only when several were scored."""
    multi_goal = len({r["goal"] for r in rows}) > 1
    multi_base = len({r["baseline"] for r in rows}) > 1
    cols = [Column("video")]
    if multi_goal:
        cols.append(Column("goal"))
    if multi_base:
        cols.append(Column("baseline"))
    return cols, (multi_goal, multi_base)


def _prompt_cells(
    row: dict[str, Any], multi: tuple[bool, bool], widths: tuple[int, int] | None
) -> list[str]:
    def cut(text: str, n: int) -> str:
        return text if widths is None else short(text, n)

    cells = [base_name(row["video"])]
    if multi[0]:
        cells.append(cut(row["goal"], widths[0] if widths else 0))
    if multi[1]:
        cells.append(cut(row["baseline"], widths[1] if widths else 0))
    return cells


def summary_spec(
    summary: list[dict[str, Any]], widths: tuple[int, int] | None = (40, 30)
) -> TableSpec:
    """Mean / min / max / argmax frame per video and combination (``widths=None``: full prompts)."""
    cols, multi = _prompt_columns(summary)
    cols += [Column(n, numeric=True) for n in ("α", "frames", "mean", "min", "max", "argmax frame")]
    spec = TableSpec(SUMMARY_TITLE, cols)
    for r in summary:
        spec.rows.append(
            _prompt_cells(r, multi, widths)
            + [
                f"{r['alpha']:g}",
                str(r["n_frames"]),
                _fmt(r["mean"]),
                _fmt(r["min"]),
                _fmt(r["max"]),
                str(r["argmax_frame"]),
            ]
        )
    return spec


def diagnostics_spec(
    diags: list[dict[str, Any]], widths: tuple[int, int] | None = (30, 24)
) -> TableSpec:
    """How well the reward tracks each ground-truth column (``widths=None``: full prompts)."""
    any_note = any(d["note"] for d in diags)
    cols, multi = _prompt_columns(diags)
    cols += [Column("α", numeric=True, no_wrap=True), Column("label", no_wrap=True)]
    cols += [
        Column(n, numeric=True, no_wrap=True)
        for n in ("n", "pearson", "spearman", "ROC-AUC", "EPIC")
    ]
    if any_note:
        cols.append(Column("note"))
    spec = TableSpec(DIAGNOSTICS_TITLE, cols, caption=DIAGNOSTICS_CAPTION)
    for d in diags:
        cells = _prompt_cells(d, multi, widths) + [
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
        spec.rows.append(cells)
    return spec


def rich_table(spec: TableSpec) -> Any:
    """A :class:`TableSpec` as a rich ``Table``."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=spec.title, title_justify="left", caption=spec.caption)
    for c in spec.columns:
        if c.numeric:
            t.add_column(c.name, justify="right", no_wrap=c.no_wrap)
        else:
            t.add_column(c.name, no_wrap=c.no_wrap, overflow="ellipsis" if c.no_wrap else "fold")
    for row in spec.rows:
        t.add_row(*(Text(c) for c in row))  # Text: no markup parsing of paths/prompts
    return t


def summary_table(summary: list[dict[str, Any]]) -> Any:
    """Mean / min / max / argmax frame per video and combination, for the terminal."""
    return rich_table(summary_spec(summary))


def diagnostics_table(diags: list[dict[str, Any]]) -> Any:
    """How well the reward tracks each ground-truth column, for the terminal."""
    return rich_table(diagnostics_spec(diags))


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
