"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file a job may be killed while writing (checkpoints, results, caches, videos) is
written to a temporary name in the same folder, flushed to disk, then published with one
``os.replace`` (and the folder flushed too) — atomic on POSIX and Windows within one filesystem. A ``kill -9`` in the
middle leaves at most a stray ``*.tmp`` file beside an intact old version.

Logs that grow line by line while a job runs (``evaluations.jsonl``) are appended with
:func:`append_jsonl` instead: each line is on disk before the call returns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def temporary_path(path: str | os.PathLike) -> Path:
    """The scratch name a write of ``path`` goes to first (same folder, same suffix).

    The suffix is kept (``model.tmp.safetensors``) because some writers (imageio, SB3's
    ``save``) pick the format, or append an extension, from it.
    """
    p = Path(path)
    return p.with_name(f"{p.stem}.tmp{p.suffix}")


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (so a power loss cannot truncate it later)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a writer that removed its own output
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to produce the file, then publish it as ``path`` in one rename.

    ``write`` receives the temporary path and must create that file. On any exception
    (Ctrl-C included) the temporary file is removed and ``path`` is left as it was.
    Returns ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(target)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        from vlmrm.runtime.storage import note_path

        note_path(exc, target)  # a full disk or read-only folder: named in its one-line error
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_write_lines(path: str | os.PathLike, lines: Iterable[str]) -> Path:
    """Write one line per item (a JSONL file, a CSV) to ``path`` atomically."""
    return atomic_write_text(path, "".join(f"{ln}\n" for ln in lines))


def append_jsonl(path: str | os.PathLike, record: Any) -> Path:
    """Append ``record`` as one JSON line to ``path`` and flush it to disk before returning.

    For logs that grow while a job runs (one line per evaluation) and are read while it
    still runs: rewriting the whole file each time would be atomic but quadratic, so the
    line is appended with one ``write`` and ``fsync``-ed (a kill right after loses
    nothing). A kill *during* the write can leave a truncated last line; readers skip a
    line that does not parse (:func:`read_jsonl`). A new file's folder entry is flushed too.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    new = not target.exists()
    line = json.dumps(record) + "\n"
    if not new and not _ends_with_newline(target):
        line = "\n" + line  # after a line cut short: keep this record on a line of its own
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    if new:
        fsync_dir(target.parent)
    return target


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        if fh.seek(0, os.SEEK_END) == 0:
            return True
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def read_jsonl(path: str | os.PathLike) -> tuple[list[Any], int]:
    """The records of a JSON-lines file, and how many lines could not be read.

    A line cut short by a kill during :func:`append_jsonl` (or otherwise damaged) is
    skipped and counted rather than failing the whole file; the next append starts a new
    line, so it is not lost with it.
    """
    records: list[Any] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                bad += 1
    return records, bad
