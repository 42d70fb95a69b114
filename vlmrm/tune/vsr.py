"""Image–caption rows and VSR (Visual Spatial Reasoning) rows, and a decoded-image cache."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.datasets.annotations import read_annotations
from vlmrm.datasets.images import find_images
from vlmrm.errors import ConfigError
from vlmrm.runtime.images import load_image
from vlmrm.tune.records import VSRExample, _resolve_image, _text, _where, read_jsonl


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise ConfigError(f"{where}: 'label' must be 0/1 or true/false, got {value!r}")


def load_vsr(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
) -> list[VSRExample]:
    """Read VSR jsonl (``image, caption, relation, label``; extra VSR fields are ignored).

    VSR ships image file names (COCO) separately from the jsonl: pass the image folder as
    ``image_root`` (default: the jsonl's folder).
    """
    root = Path(image_root) if image_root is not None else Path(os.path.abspath(path)).parent
    out = []
    for n, obj in read_jsonl(path):
        where = _where(path, n)
        missing = [k for k in ("image", "caption", "relation", "label") if k not in obj]
        if missing:
            raise ConfigError(f"{where}: VSR row is missing {missing}; rows need image, caption, relation, label")
        out.append(
            VSRExample(
                image=_resolve_image(obj["image"], root, where, "image", check_files),
                caption=_text(obj["caption"], where, "caption"),
                relation=_text(obj["relation"], where, "relation"),
                label=_label(obj["label"], where),
            )
        )
    if not out:
        raise ConfigError(f"VSR file {os.fspath(path)!r} has no rows")
    return out


def load_image_captions(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> list[tuple[str, str]]:
    """``(absolute image path, caption)`` of every caption, row by row in file order (the
    builder's and the probe's input): ``{"image", "caption"}`` JSONL rows, or any caption
    annotation format of :mod:`vlmrm.datasets.annotations`."""
    ann = read_annotations(path, "give {'image', 'caption'} rows (JSONL)", group_rows=False)
    files = find_images([r.image for r in ann.records], image_root, ann.path, setting="image_root")
    return [
        (os.path.abspath(f), c) for f, r in zip(files, ann.records, strict=True) for c in r.captions
    ]


class ImageCache:
    """Decoded images by path, least recently used evicted beyond ``max_items``.

    Preference data names each image many times (one image, many candidate captions);
    decoding it once per run instead of once per pair is most of the data-loading cost.
    """

    def __init__(self, max_items: int = 1024) -> None:
        self.max_items = int(max_items)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, path: str) -> np.ndarray:
        hit = self._items.get(path)
        if hit is not None:
            self._items.move_to_end(path)
            return hit
        img = load_image(path)
        if self.max_items > 0:
            self._items[path] = img
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return img

    def __len__(self) -> int:
        return len(self._items)
