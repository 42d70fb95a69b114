"""Caches of computed tensors (embeddings, token ids), keyed by what produced them.

A cache saves recomputing what a resumed run already computed once (a captioner's training
features, a retrieval gallery). Unlike a checkpoint it holds nothing that cannot be made
again, so its rules are simpler than :mod:`vlmrm.runtime.units`':

* one file, ``torch.save`` of ``{"key": key, **tensors}``, published by one atomic rename
  (:func:`vlmrm.runtime.atomic.atomic_write`): a kill never leaves half a cache under its name;
* read back only when its ``key`` equals the current one (the model, the data, the split...):
  a cache of other settings is silently replaced;
* a file that cannot be read (truncated, altered, not a cache) is rebuilt, with one warning
  line naming it (a :class:`~vlmrm.errors.VLMRMWarning`), never an error: the run goes on
  and only pays the recomputation.

Torch is imported only when a cache is read or written.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmrm.runtime.atomic import atomic_write


def _warn(message: str) -> None:
    from vlmrm.errors import VLMRMWarning

    warnings.warn(message, VLMRMWarning, stacklevel=3)


def read_cache(
    path: str | os.PathLike,
    key: Any,
    warn: Callable[[str], None] = _warn,
    required: tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """The saved entries of the cache ``path`` (its ``key`` removed), or ``None`` when there is
    none, it was made with another ``key``, or it is damaged or lacks a ``required`` entry
    (then after one ``warn`` line)."""
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict):
            raise ValueError("not a cache")
        missing = [name for name in required if name not in saved] if "key" in saved else []
        if missing:
            raise KeyError(f"no {missing[0]!r} entry")
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, it is rebuilt
        text = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {text[0][:120]}" if text else type(exc).__name__
        warn(f"{os.fspath(path)} is damaged ({why}); computing it again")
        return None
    if saved.get("key") != key:
        return None
    return {k: v for k, v in saved.items() if k != "key"}


def write_cache(path: str | os.PathLike, key: Any, entries: dict[str, Any]) -> Path:
    """Save ``entries`` (tensors, lists of them, ints, strings) under ``key``, atomically."""
    import torch

    saved = {"key": key, **entries}
    return atomic_write(Path(path), lambda tmp: torch.save(saved, os.fspath(tmp)))


def cached(
    path: str | os.PathLike,
    key: Any,
    build: Callable[[], dict[str, Any]],
    warn: Callable[[str], None] = _warn,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The entries of the cache ``path`` when it matches ``key``; else ``build()``, saved there."""
    found = read_cache(path, key, warn, required)
    if found is not None:
        return found
    entries = build()
    write_cache(path, key, entries)
    return entries
