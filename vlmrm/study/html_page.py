"""``study.html``: the study on one self-contained page, in the style of the scoring report.

The sweep's command line and job states, the table (the console's cells, drawn by the
scoring report's :func:`~vlmrm.scoring.html_report.table_html` with its style sheet),
the curves (the PNG inlined as a ``data:`` URI) and the jobs left out. Nothing is fetched
from the network, so the page opens from disk, an e-mail or a CI artifact. Written
atomically.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from vlmrm.runtime.atomic import atomic_write_text
from vlmrm.scoring.html_report import _CSS as REPORT_CSS
from vlmrm.scoring.html_report import table_html
from vlmrm.study.aggregate import Study
from vlmrm.study.plots import setting_label
from vlmrm.study.tables import table_spec

_CSS = REPORT_CSS + """
.partial{padding:.5em .8em;background:#fff4d6;border-left:4px solid #e0a800;max-width:60em}
img.curves{max-width:100%;height:auto;display:block;margin:.5em 0}
code{white-space:pre-wrap}
"""


def _partial_banner(study: Study) -> str:
    sweep = study.sweep
    if not sweep.partial:
        return ""
    return (
        f'<p class="partial"><b>Partial:</b> {sweep.count("done")} of {len(sweep.jobs)} jobs finished '
        f"({html.escape(sweep.states())}); the table and the curves use the finished jobs only. "
        "Run the study again when the sweep has ended.</p>"
    )


def _left_out(study: Study) -> str:
    if not study.left_out:
        return ""
    items = "".join(
        f"<li>{html.escape(job.label())}: {html.escape(why)}</li>" for job, why in study.left_out
    )
    return f'<h2>Jobs not aggregated</h2><ul class="failures">{items}</ul>'


def render_page(study: Study, png: bytes | None, notes: list[str]) -> str:
    """The whole page as text."""
    sweep = study.sweep
    launcher = sweep.launcher.get("name", "?") if sweep.launcher else "?"
    facts = [f"{len(sweep.jobs)} jobs: {sweep.states()}", f"launcher {launcher}"]
    if study.by:
        facts.append("grouped by " + ", ".join(study.by))
    head = f'<p class="facts">{html.escape(" · ".join(facts))}</p>'
    if sweep.command_line:
        head += f"<p><code>{html.escape(sweep.command_line)}</code></p>"
    if png is not None:
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        alt = "evaluation curves: " + "; ".join(sorted({setting_label(c.setting) for c in study.curves}))
        plot = f'<h2>Evaluation curves</h2><img class="curves" alt="{html.escape(alt)}" src="{uri}">'
    else:
        plot = '<p class="caption">No evaluation curves: the finished runs hold no evaluations.jsonl.</p>'
    note_html = "".join(f'<p class="caption">{html.escape(n)}</p>' for n in notes)
    body = "\n".join(
        [head, _partial_banner(study), table_html(table_spec(study), "study"), plot, _left_out(study), note_html]
    )
    title = f"Sweep study: {sweep.name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


def write_page(path: str | Path, study: Study, png: bytes | None, notes: list[str]) -> Path:
    """Write the page atomically to ``path``."""
    return atomic_write_text(path, render_page(study, png, notes))
