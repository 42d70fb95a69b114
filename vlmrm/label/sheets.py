"""Labelling sheets: frames drawn from videos, shuffled, numbered, ready for a person.

The VLM-RM paper judged its agents by people looking at their frames. A sheet folder
makes that cheap and honest:

* ``labels.csv`` — the one file to fill: one row per frame (``id, sheet, label, note,
  video, frame, image``); ``label`` is empty, ``note`` optional;
* ``sheet_NNN.png`` — the frames in numbered grids (the number is the ``id``);
* ``frames/NNNNN.png`` — each drawn frame, lossless, so the frames scored later are
  exactly the frames labelled, whatever the video decoder does;
* ``manifest.json`` — the settings, the videos and their frame counts.

Frames of every video are shuffled together before they are numbered, and the images
show only the number, so the labeller cannot tell a late training step from an early one.
The folder is built beside ``out`` and renamed into place when complete: an interrupted
run leaves no half-written sheet, and an existing folder (whose CSV may already be
filled in) is only replaced with ``overwrite=true``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.label.grid import draw_sheet
from vlmrm.label.settings import SheetSettings
from vlmrm.label.sources import episode_end_notes, resolve_sources
from vlmrm.runtime.atomic import fsync_dir, fsync_file
from vlmrm.runtime.images import save_png
from vlmrm.video import iter_frames

#: Columns of ``labels.csv``, in order; the person fills ``label`` (and may add a ``note``).
COLUMNS = ("id", "sheet", "label", "note", "video", "frame", "image")


@dataclass
class Drawn:
    """One frame drawn for labelling: where it comes from, and its pixels."""

    video: str
    frame: int
    pixels: np.ndarray


def _count(video: str) -> int:
    return sum(1 for _ in iter_frames(video))


def draw_frames(video: str, sample: str, per_video: int, rng: np.random.Generator) -> tuple[list[Drawn], int]:
    """The frames of one video to label, and its frame count (every frame is decoded).

    ``sample="frames"``: ``per_video`` distinct frames drawn uniformly with ``rng`` (all
    frames of a shorter video), in frame order; ``"episode_end"``: the last frame.
    """
    if sample == "episode_end":
        last, n = None, 0
        for index, frame in iter_frames(video):
            last, n = (index, frame), n + 1
        assert last is not None  # iter_frames raises for a video without frames
        return [Drawn(video, last[0], last[1])], n
    n = _count(video)
    wanted = set(int(i) for i in rng.choice(n, size=min(per_video, n), replace=False))
    drawn = []
    for index, frame in iter_frames(video):
        if index in wanted:
            drawn.append(Drawn(video, index, frame))
            if len(drawn) == len(wanted):
                break
    return drawn, n


def _iter_videos(videos: list[str], progress: bool) -> Iterator[tuple[int, str]]:
    if not progress:
        yield from enumerate(videos)
        return
    from tqdm.auto import tqdm

    yield from enumerate(tqdm(videos, desc="drawing frames", unit="video", leave=False, dynamic_ncols=True))


def sample_videos(
    videos: list[str], sample: str, per_video: int, seed: int, progress: bool = False
) -> tuple[list[Drawn], dict[str, int]]:
    """Draw from every video; shuffle all drawn frames together (the labelling order).

    Video *k* draws with its own generator (seeded by ``seed`` and *k*), so a sheet is the
    same for the same videos and seed.
    """
    drawn: list[Drawn] = []
    counts: dict[str, int] = {}
    for k, video in _iter_videos(videos, progress):
        frames, n = draw_frames(video, sample, per_video, np.random.default_rng([seed, k]))
        drawn.extend(frames)
        counts[video] = n
    order = np.random.default_rng(seed).permutation(len(drawn))
    return [drawn[i] for i in order], counts


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write_folder(folder: Path, drawn: list[Drawn], settings: SheetSettings, counts: dict[str, int]) -> list[dict]:
    (folder / "frames").mkdir(parents=True)
    rows = []
    per = settings.per_sheet
    for start in range(0, len(drawn), per):
        sheet = start // per + 1
        chunk = drawn[start : start + per]
        ids = list(range(start + 1, start + len(chunk) + 1))
        for number, item in zip(ids, chunk, strict=True):
            image = f"frames/{number:05d}.png"
            save_png(folder / image, item.pixels)
            rows.append(
                {"id": number, "sheet": sheet, "label": "", "note": "", "video": item.video,
                 "frame": item.frame, "image": image}
            )
        draw_sheet([d.pixels for d in chunk], ids, settings.cell_size).save(folder / f"sheet_{sheet:03d}.png")
    (folder / "labels.csv").write_text(_csv_text(rows), encoding="utf-8")
    manifest = {
        "sample": settings.sample,
        "per_video": settings.per_video if settings.sample == "frames" else 1,
        "per_sheet": settings.per_sheet,
        "seed": settings.seed,
        "sources": settings.sources,
        "videos": [{"video": v, "frames": n} for v, n in counts.items()],
        "n_frames": len(rows),
        "n_sheets": -(-len(rows) // per),
        "labels": "fill the label column of labels.csv: yes/no, 1/0 or true/false (blank: not labelled)",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for name in ("labels.csv", "manifest.json"):
        fsync_file(folder / name)
    return rows


def publish_folder(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``out`` by renames (an old ``out`` only with ``overwrite``)."""
    old = None
    if out.exists():
        if any(out.iterdir()) and not overwrite:  # it appeared while the frames were drawn
            raise ConfigError(f"out={str(out)!r} appeared meanwhile; pass overwrite=true to replace it")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class Sheets:
    """A written sheet folder: where, the rows of its ``labels.csv``, and notes for the user."""

    out: Path
    rows: list[dict[str, Any]]
    notes: list[str]


def make_sheets(settings: SheetSettings) -> Sheets:
    """Draw, shuffle and write a sheet folder (see the module docstring)."""
    settings.validate()  # a no-op after the command line; checks settings built in Python
    videos = resolve_sources(settings.sources)
    notes = episode_end_notes(videos) if settings.sample == "episode_end" else []
    drawn, counts = sample_videos(videos, settings.sample, settings.per_video, settings.seed, settings.progress)
    out = Path(settings.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        rows = _write_folder(tmp, drawn, settings, counts)
        publish_folder(tmp, out, settings.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Sheets(out, rows, notes)
