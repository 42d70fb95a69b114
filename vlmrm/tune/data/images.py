"""Image–caption rows and the decoded-image cache every tuning command reads images through."""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from vlmrm.datasets.annotations import read_annotations
from vlmrm.datasets.images import find_images
from vlmrm.runtime.images import load_image


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
