"""What the labelling commands print: the sheets written, and the reward's agreement with people."""

from __future__ import annotations

import math
from typing import Any

from vlmrm.label.agreement_run import Agreement
from vlmrm.label.sheets import Sheets


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def per_video_table(rows: list[dict[str, Any]]) -> Any:
    """Per video (e.g. per training step): how many frames, judged a success, and the mean reward."""
    from rich.table import Table
    from rich.text import Text

    multi = len({(r["goal"], r["baseline"]) for r in rows}) > 1
    t = Table(title="Success judged by people vs CLIP reward, per video", title_justify="left")
    t.add_column("video", overflow="fold")
    if multi:
        t.add_column("goal | baseline", overflow="fold")
    for name in ("α", "labelled", "success", "success rate", "mean reward"):
        t.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        cells = [r["video"]] + ([f"{r['goal']} | {r['baseline']}"] if multi else [])
        cells += [f"{r['alpha']:g}", str(r["labelled"]), str(r["success"]), _fmt(r["success_rate"], 2),
                  _fmt(r["mean_reward"], 4)]
        t.add_row(*(Text(c) for c in cells))
    return t


def print_agreement(result: Agreement, console: Any) -> None:
    """The diagnostics table (as ``vlmrm.score`` prints it), the per-video table, the files."""
    from vlmrm.scoring.report import diagnostics_table

    sheet = result.sheet
    positives = sum(r.label for r in sheet.rows)
    console.print(
        f"{len(sheet.rows)} labelled frames ({positives} success, {len(sheet.rows) - positives} not); "
        f"{sheet.unlabelled} blank rows skipped",
        highlight=False, markup=False,
    )
    console.print(diagnostics_table(result.diagnostics))
    console.print(per_video_table(result.per_video))
    console.print("wrote: " + ", ".join(result.files), highlight=False, markup=False, soft_wrap=True)


def print_sheets(sheets: Sheets, console: Any, err: Any) -> None:
    """Where the sheets are and what to do next (notes on stderr)."""
    out, rows = sheets.out, sheets.rows
    for note in sheets.notes:
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    n_sheets = len({r["sheet"] for r in rows})
    n_videos = len({r["video"] for r in rows})
    console.print(
        f"{len(rows)} frames from {n_videos} videos on {n_sheets} sheets in {out}/: look at "
        f"sheet_*.png and fill the label column of {out / 'labels.csv'} (yes/no); then run "
        f"python -m vlmrm.label.agreement {out / 'labels.csv'} goal=...",
        highlight=False, markup=False, soft_wrap=True,
    )
