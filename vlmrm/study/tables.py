"""The study's table three ways: ``study.csv`` (full precision), the console and the page.

The console and the page draw the same :class:`~vlmrm.scoring.report.TableSpec` (the
scoring report's table type: rich for the terminal, HTML for the page), so they always
show the same cells; the CSV holds the unrounded numbers.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from vlmrm.runtime.atomic import atomic_write_text
from vlmrm.scoring.report import Column, TableSpec
from vlmrm.study.aggregate import STAT_COLUMNS, Row, Study


def number(x: float) -> str:
    """A table cell: 6 significant digits, ``–`` for a missing value."""
    return "–" if not math.isfinite(x) else f"{x:.6g}"


def _csv_cell(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return str(value)


def csv_text(study: Study) -> str:
    """``study.csv``: ``metric``, the setting columns, :data:`STAT_COLUMNS`; NaN as empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["metric", *study.by, *STAT_COLUMNS])
    for row in study.rows:
        rec = row.record()
        writer.writerow([_csv_cell(rec[k]) for k in ["metric", *study.by, *STAT_COLUMNS]])
    return buf.getvalue()


def write_csv(path: str | Path, study: Study) -> Path:
    return atomic_write_text(path, csv_text(study))


def _note(row: Row) -> str:
    parts = []
    if row.partial:
        parts.append(f"partial: {row.unfinished} job{'s' if row.unfinished > 1 else ''} unfinished")
    if row.failed:
        parts.append(f"{row.failed} failed")
    return "; ".join(parts)


def title(study: Study) -> str:
    text = f"Sweep {study.sweep.name}: final evaluation, IQM over seeds with its 95% interval"
    return text + (" (PARTIAL)" if study.sweep.partial else "")


def caption(study: Study) -> str:
    """How the numbers were computed, in one line under the table."""
    return (
        f"IQM: mean of the middle 50% of seeds; interval: percentile stratified bootstrap over "
        f"seeds ({study.backend}, {study.reps} resamples, seed {study.seed}); std with ddof=1"
    )


def table_spec(study: Study) -> TableSpec:
    """The rows as text cells: metric, setting columns, n, IQM, interval, mean, std, median."""
    any_note = any(_note(r) for r in study.rows)
    cols = [Column("metric", no_wrap=True)] + [Column(k) for k in study.by]
    cols += [Column(name, numeric=True) for name in ("n", "IQM", "CI low", "CI high", "mean", "std", "median")]
    if any_note:
        cols.append(Column("note"))
    spec = TableSpec(title(study), cols, caption=caption(study))
    for r in study.rows:
        cells = [r.metric, *(r.setting[k] for k in study.by), str(r.n)]
        cells += [number(v) for v in (r.iqm, r.ci_low, r.ci_high, r.mean, r.std, r.median)]
        if any_note:
            cells.append(_note(r))
        spec.rows.append(cells)
    return spec
