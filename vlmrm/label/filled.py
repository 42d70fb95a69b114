"""Reading a filled ``labels.csv``: one clear line for every way a hand-edited file goes wrong.

A person types the labels, often in a spreadsheet, so the reader accepts what people
write for a yes/no judgement — ``yes``/``no``, ``1``/``0``, ``true``/``false`` (any case,
spaces around ignored; ``y``/``n`` too) — and treats a blank cell as "not labelled yet":
such rows are skipped and counted. Anything else stops the import with a line naming the
CSV line, the frame's id and the accepted values; a frame file that has gone missing is
named the same way.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from vlmrm.errors import ConfigError

YES = ("yes", "y", "1", "true")
NO = ("no", "n", "0", "false")
ACCEPTED = "yes/no, 1/0 or true/false (blank: not labelled)"
REQUIRED = ("id", "label", "video", "frame", "image")


@dataclass
class Labelled:
    """One labelled frame of a sheet."""

    id: int
    video: str
    frame: int
    image: Path
    label: int
    note: str = ""


@dataclass
class FilledSheet:
    """The labelled rows of a ``labels.csv``, and how many rows were left blank."""

    path: Path
    rows: list[Labelled] = field(default_factory=list)
    unlabelled: int = 0


def parse_label(text: str | None) -> int | None:
    """``1`` for yes, ``0`` for no, ``None`` for a blank cell; ``ValueError`` otherwise."""
    value = (text or "").strip().lower()
    if not value:
        return None
    if value in YES:
        return 1
    if value in NO:
        return 0
    raise ValueError(value)


def _int(text: str | None, column: str, where: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{where}: {column} {text!r} is not an integer; do not edit the {column} column") from None


def read_filled(path: str | Path, frames_dir: str | Path | None = None) -> FilledSheet:
    """The labelled frames of a filled sheet CSV (``frames_dir``: where ``image`` paths start;
    default the CSV's folder).

    Raises:
        ConfigError: unreadable CSV, missing columns, a label that is not yes/no, a repeated
            id, a missing frame file, or no labelled row at all.
    """
    path = Path(path)
    base = Path(frames_dir) if frames_dir is not None else path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets add a BOM
            reader = csv.DictReader(fh)
            header = [str(c).strip() for c in reader.fieldnames or []]
            reader.fieldnames = header
            lines = list(reader)
    except (OSError, UnicodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the labels file {str(path)!r}: {exc}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ConfigError(
            f"labels file {str(path)!r} has no {missing[0]!r} column (columns: {header}); "
            "fill the labels.csv that python -m vlmrm.label wrote, keeping its columns"
        )
    sheet = FilledSheet(path)
    seen: set[int] = set()
    for number, line in enumerate(lines, start=2):  # line 1 is the header
        where = f"{path.name} line {number}"
        ident = _int(line.get("id"), "id", where)
        if ident in seen:
            raise ConfigError(f"{where}: id {ident} appears twice; each frame has one row")
        seen.add(ident)
        try:
            label = parse_label(line.get("label"))
        except ValueError:
            raise ConfigError(
                f"{where} (id {ident}): label {line.get('label')!r} is not one of {ACCEPTED}"
            ) from None
        if label is None:
            sheet.unlabelled += 1
            continue
        image = base / str(line.get("image") or "").strip()
        if not image.is_file():
            raise ConfigError(
                f"{where} (id {ident}): frame file {str(image)!r} is missing; keep labels.csv beside "
                "its frames/ folder or pass frames_dir=<the sheet folder>"
            )
        sheet.rows.append(
            Labelled(ident, str(line.get("video") or ""), _int(line.get("frame"), "frame", where), image,
                     label, str(line.get("note") or "").strip())
        )
    if not sheet.rows:
        raise ConfigError(
            f"no frame of {str(path)!r} is labelled yet ({sheet.unlabelled} blank); fill its label "
            f"column with {ACCEPTED}"
        )
    return sheet
