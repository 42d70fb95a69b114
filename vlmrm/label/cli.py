"""``python -m vlmrm.label``: labelling sheets of frames from training runs or videos.

Usage (``key=value`` settings; bare arguments are sources)::

    python -m vlmrm.label runs/quickstart sample=frames per_video=4 out=sheets/
    python -m vlmrm.label videos=... sample=episode_end per_sheet=25 seed=1

Writes ``out/labels.csv`` (fill its ``label`` column), ``sheet_NNN.png`` (numbered
grids), ``frames/`` (the frames, lossless) and ``manifest.json``; see
:mod:`vlmrm.label.sheets`. Then ``python -m vlmrm.label.agreement out/labels.csv goal=...``
reports how well a CLIP reward agrees with the labels.
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.label.settings import SheetSettings
from vlmrm.runtime.lock import one_writer

COMMAND = Command(
    prog="python -m vlmrm.label",
    settings=SheetSettings,
    summary=(
        "Labelling sheets: frames drawn from training runs or videos, shuffled across them, in "
        "numbered grids, with one labels.csv to fill (yes/no per frame). Then "
        "python -m vlmrm.label.agreement scores the labelled frames with a CLIP reward."
    ),
    examples=(
        "python -m vlmrm.label runs/quickstart out=sheets/",
        "python -m vlmrm.label a.mp4 b.mp4 sample=episode_end per_sheet=25 out=ends/",
    ),
    positional="sources",
)


def _body(settings: SheetSettings) -> int:
    from vlmrm.label.report import print_sheets
    from vlmrm.label.sheets import make_sheets
    from vlmrm.runtime.console import make_console

    print_sheets(make_sheets(settings), make_console(), make_console(stderr=True))
    return 0


main = entry_point(COMMAND, one_writer(_body, lambda s: s.out, beside=True))

if __name__ == "__main__":
    raise SystemExit(main())
