"""``python -m vlmrm.score``: score videos with a CLIP reward, before training on it.

Usage (``key=value`` settings, OmegaConf syntax; bare arguments are video paths)::

    python -m vlmrm.score clip.mp4 goal="a humanoid robot kneeling" baseline="a humanoid robot"
    python -m vlmrm.score videos=[a.mp4,b.mp4,frames/] goal="a humanoid robot kneeling" \\
        baseline="a humanoid robot" model=ViT-B-32/openai alpha=[0,0.5,1] out=scores/ \\
        labels=labels.csv label_column=success video_out=true

Writes to ``out``: ``scores.csv`` (``video, frame, time, goal, baseline, alpha, reward``;
or everything in ``scores.json`` with ``format=json``), ``summary.csv``, one
``<video>.png`` plot per video, ``<video>.reward.mp4`` with ``video_out=true``,
``diagnostics.csv`` when labels are given, and with ``report=html`` ``report.html``: one
self-contained page with each video playing beside its reward curves and the tables. Prints a summary table (mean / min / max /
argmax frame per video and combination) and, with labels, how well the reward tracks
them (Pearson, Spearman, ROC-AUC, EPIC distance: see :mod:`vlmrm.diagnostics`).

A video that cannot be read is reported and skipped; the others are still scored. Exit
status: 0 all scored, 1 some videos failed, 2 bad settings.

Lists: ``goal=[g1,g2]`` scores two goals; ``goal=[[p1,p2]]`` one goal averaging two
prompts (the same for ``baseline``). Every goal × baseline × α combination is scored
from a single pass of the image tower.

On several GPUs or machines, launch it with torchrun (the same arguments)::

    torchrun --nproc-per-node=4 -m vlmrm.score videos=[...] goal=... out=scores/

Every rank loads its own CLIP (one GPU per local rank; the CPU without GPUs) and scores
its share of the videos (``videos[rank::world_size]``); rank 0 gathers the results and
alone writes the files and prints the tables, exactly those of a one-process run. Rank 0
also draws the plots and reward videos and reads ``labels``, so it must see ``out``, the
labels and (for ``video_out=true`` or ``labels=auto``) the videos.

The settings live in :mod:`vlmrm.scoring.settings`, the run in :mod:`vlmrm.scoring.runner`.
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.scoring.settings import ScoreSettings

COMMAND = Command(
    prog="python -m vlmrm.score",
    settings=ScoreSettings,
    summary=(
        "Score videos with a CLIP reward (CSV/JSON, plots, reward videos, diagnostics against "
        "labels). Exit status: 0 all scored, 1 some videos failed, 2 bad settings."
    ),
    examples=(
        "python -m vlmrm.score clip.mp4 goal='a humanoid robot kneeling' baseline='a humanoid robot'",
        "python -m vlmrm.score videos=[a.mp4,b.mp4] goal='a humanoid robot kneeling' "
        "baseline='a humanoid robot' alpha=[0,0.5,1] out=scores/",
    ),
    positional="videos",
)


def _body(settings: ScoreSettings) -> int:
    from vlmrm.scoring.runner import main_body

    return main_body(settings)


main = entry_point(COMMAND, _body)

if __name__ == "__main__":
    raise SystemExit(main())
