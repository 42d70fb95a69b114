"""Checkpoint units: folders of files published whole, verified on load, newest complete first.

A long job's state is several files (an agent and its replay buffer; weights and
optimiser state). Renaming each file into place is not enough: a kill between two
renames mixes two checkpoints. Here every file of one checkpoint goes into
``<root>/<name>.partial/``, each is flushed to disk, a ``manifest.json`` records the
sizes and SHA-256 of all of them, the folder is flushed, and one ``os.replace``
publishes it as ``<root>/<name>/``. A folder without the ``.partial`` suffix is
therefore always complete, and :func:`verify_unit` proves it was not damaged since.

Used by the training checkpoints (:mod:`vlmrm.agents.checkpoint`), the tuning
checkpoints (:mod:`vlmrm.tune.checkpoint`) and the captioner's training
(:mod:`vlmrm.caption.trainer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write, atomic_write_json, fsync_dir, fsync_file
from vlmrm.runtime.storage import note_path

MANIFEST = "manifest.json"
FORMAT = 2
STEP_NAME = re.compile(r"^step_(\d+)$")


class NoCheckpoint(ConfigError):
    """A folder without any complete checkpoint (e.g. killed before its first save ended)."""


def step_name(step: int) -> str:
    """The folder name of the checkpoint of ``step``: ``step_000128000``."""
    return f"step_{int(step):09d}"


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def short_error(exc: BaseException) -> str:
    """``Type: first line`` of an exception, for one-line messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def write_unit(root: Path, name: str, writers: dict[str, Callable[[Path], Any]], meta: dict[str, Any]) -> dict:
    """Write ``writers`` (file name → ``write(path)``) as the checkpoint ``root/name``.

    ``meta`` (step, reason...) goes into the manifest with each file's size and checksum.
    An existing checkpoint of the same name is replaced (renamed aside, then removed).
    Returns the manifest.
    """
    root.mkdir(parents=True, exist_ok=True)
    remove_scratch(root)
    partial = root / f"{name}.partial"
    partial.mkdir()
    files = {}
    file = MANIFEST
    try:
        for file, write in writers.items():
            write(partial / file)
            fsync_file(partial / file)
            files[file] = {"size": (partial / file).stat().st_size, "sha256": sha256(partial / file)}
        file = MANIFEST
        manifest = {"format": FORMAT, **meta, "time": time.time(), "files": files}
        atomic_write_json(partial / MANIFEST, manifest)  # also flushes the folder
    except BaseException as exc:
        # A failed save (a full disk, above all) gives its space back at once; a kill
        # here leaves the folder to remove_scratch of the next save instead.
        note_path(exc, partial / file)
        shutil.rmtree(partial, ignore_errors=True)
        raise
    final = root / name
    if final.exists():
        aside = root / f"{name}.replaced"
        os.replace(final, aside)
        os.replace(partial, final)
        fsync_dir(root)
        shutil.rmtree(aside)
    else:
        os.replace(partial, final)
    fsync_dir(root)
    return manifest


def publish_copy(unit_file: Path, path: Path) -> Path:
    """Publish a checkpoint's file under a stable name too (``out/mapper.safetensors`` for the
    newest one, say): a hard link (no second copy on disk), or a copy where links fail, put
    in place by one atomic rename. Safe because a unit's files are never rewritten in place."""
    def link(tmp: Path) -> None:
        try:
            os.link(unit_file, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(unit_file, tmp)

    return atomic_write(path, link)


def remove_scratch(root: Path) -> None:
    """Remove what an interrupted save or prune left behind (never a published checkpoint)."""
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.is_dir() and path.suffix in (".partial", ".deleting"):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and path.suffix == ".replaced":
            if (root / path.stem).is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:  # killed between the two renames: the replaced one is still complete
                os.replace(path, root / path.stem)


def list_units(root: Path) -> list[tuple[int, Path]]:
    """Published ``step_<N>`` folders, newest first (a ``.replaced`` one stands in for its step)."""
    found: dict[int, Path] = {}
    if not root.is_dir():
        return []
    for path in root.iterdir():
        base = path.name.removesuffix(".replaced")
        match = STEP_NAME.match(base)
        if match and path.is_dir() and (path.name == base or int(match.group(1)) not in found):
            found[int(match.group(1))] = path
    return sorted(found.items(), reverse=True)


def remove_unit(path: Path) -> None:
    """Delete a checkpoint folder: renamed aside first, so a kill never leaves half of one."""
    aside = path.with_name(path.name + ".deleting")
    os.replace(path, aside)
    shutil.rmtree(aside)


def prune_units(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints."""
    removed = []
    for _, path in list_units(root)[keep:]:
        remove_unit(path)
        removed.append(path)
    return removed


def verify_unit(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest of a checkpoint folder, after checking every file's size and checksum.

    Raises :class:`ConfigError` saying what is wrong (missing, truncated, altered).
    """
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        int(manifest["step"])
        files = dict(manifest["files"])
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: {MANIFEST} is missing") from None
    except Exception as exc:  # noqa: BLE001 - truncated JSON, wrong types: damaged either way
        raise ConfigError(f"{path.name}: {MANIFEST} is damaged ({short_error(exc)})") from None
    for file in required:
        if file not in files:
            raise ConfigError(f"{path.name}: {MANIFEST} lists no {file}")
    for file, meta in files.items():
        fpath = path / file
        if not fpath.is_file():
            raise ConfigError(f"{path.name}: {file} is missing")
        size = fpath.stat().st_size
        if size != meta.get("size"):
            raise ConfigError(f"{path.name}: {file} has {size} bytes, the manifest says {meta.get('size')}")
        if sha256(fpath) != meta.get("sha256"):
            raise ConfigError(f"{path.name}: {file} does not match its checksum (altered or damaged)")
    return manifest


def newest_unit(
    root: Path, warn: Callable[[str], None], required: tuple[str, ...] = (), what: str = "checkpoints/"
) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint under ``root`` that passes :func:`verify_unit`, and its manifest.

    Damaged ones are skipped with one ``warn`` line each. :class:`NoCheckpoint` if there
    is none at all; :class:`ConfigError` if every one is damaged (nothing is deleted).
    """
    found = list_units(root)
    if not found:
        raise NoCheckpoint(f"{root.parent} has no checkpoint yet (nothing in {root})")
    problems = []
    for _, path in found:
        try:
            return path, verify_unit(path, required)
        except ConfigError as exc:
            problems.append(str(exc))
            warn(f"skipping damaged checkpoint {exc}")
    raise ConfigError(
        f"{root.parent}: every checkpoint is damaged ({'; '.join(problems)}); "
        f"restore the files, or delete {what} to start over"
    )
