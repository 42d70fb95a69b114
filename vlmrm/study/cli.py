"""``python -m vlmrm.study <sweep folder>``: the table a paper needs, from a finished (or running) sweep.

Reads ``sweep.json`` and each done run's ``evaluations.jsonl``, groups the jobs by their
swept settings other than ``seed`` (or ``by=``), and writes into the sweep folder (or
``out=``) ``study.csv``, ``curves.png`` and ``study.html``, and prints the table. Nothing
here imports torch: the study of a sweep trained on a GPU cluster runs on a laptop.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from vlmrm.cli.args import Command, entry_point
from vlmrm.study.settings import StudySettings

COMMAND = Command(
    "python -m vlmrm.study",
    StudySettings,
    "Aggregate a sweep: per setting (the swept values other than seed), the IQM over seeds of\n"
    "the final evaluation with a 95% stratified bootstrap interval (rliable, or scipy.stats\n"
    "without it), mean, std and median; evaluation curves with their bands. Writes study.csv,\n"
    "curves.png and study.html into the sweep folder. A sweep still running is reported with\n"
    "the jobs that have finished, marked partial; failed jobs are listed, not aggregated.",
    examples=(
        "python -m vlmrm.study runs/multirun/alpha-sweep",
        "python -m vlmrm.study runs/multirun/alpha-sweep by=reward.alpha metric=gt_return",
        "python -m vlmrm.study runs/multirun/alpha-sweep reps=10000 out=reports/alpha",
    ),
    positional="sweep",
)

CSV_FILE, PNG_FILE, HTML_FILE = "study.csv", "curves.png", "study.html"


@dataclass
class StudyFiles:
    """What a study wrote (the PNG is None when no run holds evaluation curves)."""

    csv: Path
    png: Path | None
    html: Path


def write_study(settings: StudySettings, notes: list[str] | None = None):
    """Read the sweep, aggregate it and write the three files; returns (study, files)."""
    from vlmrm.runtime.atomic import atomic_write_bytes
    from vlmrm.study import aggregate, html_page, plots, statistics, tables
    from vlmrm.study.reading import read_sweep

    notes = [] if notes is None else notes
    sweep = read_sweep(settings.sweep)
    notes.extend(sweep.notes)
    study = aggregate.study(sweep, settings.by, settings.metric, settings.reps, settings.seed)
    notice = statistics.fallback_notice()
    if notice:
        notes.append(notice)
    out = Path(settings.out) if settings.out is not None else sweep.folder
    png = plots.curves_png(study.curves, study.metrics)
    files = StudyFiles(
        csv=tables.write_csv(out / CSV_FILE, study),
        png=atomic_write_bytes(out / PNG_FILE, png) if png is not None else None,
        html=html_page.write_page(out / HTML_FILE, study, png, notes),
    )
    return study, files


def _study(settings: StudySettings) -> int:
    from vlmrm.runtime.console import make_console
    from vlmrm.scoring.report import rich_table
    from vlmrm.study.tables import table_spec

    notes: list[str] = []
    study, files = write_study(settings, notes)
    console, err = make_console(), make_console(stderr=True)
    console.print(rich_table(table_spec(study)))
    sweep = study.sweep
    if sweep.partial:
        console.print(
            f"partial: {sweep.count('done')} of {len(sweep.jobs)} jobs finished ({sweep.states()}); "
            "run the study again when the sweep has ended",
            highlight=False, markup=False, soft_wrap=True,
        )
    for job, why in study.left_out:
        err.print(f"not aggregated: {job.label()}: {why}", highlight=False, markup=False, soft_wrap=True)
    for note in notes:
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    wrote = [files.csv, files.png, files.html]
    console.print("wrote: " + ", ".join(str(p) for p in wrote if p is not None),
                  highlight=False, markup=False, soft_wrap=True)
    sys.stdout.flush()
    return 0


main = entry_point(COMMAND, _study)
