"""Tiny synthetic datasets and settings shared by the ``python -m vlmrm.tta`` tests.

Imported as ``from _tta import ...`` (``tests/`` is on ``sys.path`` under pytest, see
``_torchrun.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np

#: Fast classification settings: tiny models, 8 views, 2 steps, no progress bar.
TINY = [
    "model=vlmrm-tiny",
    "reward_model=vlmrm-tiny",
    "progress=false",
    "views=8",
    "select=0.25",
    "steps=2",
]

CLASSES = ("cat", "dog", "golden_retriever")


def make_class_folders(root: Path, per_class: int = 3) -> Path:
    """``root/<class>/<i>.png``: ``per_class`` random images (of differing heights) per class."""
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            iio.imwrite(
                root / c / f"{i}.png",
                rng.integers(0, 255, size=(30 + 7 * i, 40, 3), dtype=np.uint8),
            )
    return root


def karpathy_split(
    root: Path, captions: Sequence[Sequence[str]], size: tuple[int, int] = (24, 32), ext: str = "png"
) -> tuple[Path, Path]:
    """A retrieval set in Karpathy's format: random images ``root/images/<i>.<ext>`` of ``size``
    ``(height, width)``, image ``i`` captioned ``captions[i]``, all in the ``test`` split of
    ``root/ann.json``. Returns ``(annotation file, image folder)``."""
    rng = np.random.default_rng(1)
    imgs = root / "images"
    imgs.mkdir()
    entries = []
    for i, caps in enumerate(captions):
        iio.imwrite(imgs / f"{i}.{ext}", rng.integers(0, 255, size=(*size, 3), dtype=np.uint8))
        sentences = [{"raw": c} for c in caps]
        entries.append({"filename": f"{i}.{ext}", "split": "test", "sentences": sentences})
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": entries}))
    return ann, imgs
