"""Captioning data: images with their reference captions, read from local files only.

The annotation file is read by :mod:`vlmrm.datasets.annotations` (Karpathy split JSON for
COCO/Flickr30k, COCO captions JSON such as the NoCaps validation file, LAVIS JSON, JSONL,
CSV) and its images found by :mod:`vlmrm.datasets.images` (``images=``, default the file's
folder). What captioning adds is its own shape: the raw reference sentences per image (the
metrics score against them unchanged) and the image ids that the COCO results format
needs. ``split=`` picks ``test``/``val``/``train`` (with ``restval``)/``all`` of a Karpathy
file; the other formats are one split each. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vlmrm.datasets.annotations import KARPATHY_SPLITS, read_split

SPLITS = KARPATHY_SPLITS


@dataclass
class CaptionData:
    """Images, their ids (for the COCO results format) and their reference captions."""

    image_paths: list[Path]
    image_ids: list[int | str]
    references: list[list[str]]
    source: str = ""

    def __len__(self) -> int:
        return len(self.image_paths)

    def pairs(self) -> list[tuple[int, str]]:
        """``(image index, caption)`` of every reference caption (the training pairs)."""
        return [(i, c) for i, refs in enumerate(self.references) for c in refs]


def load_captions(
    annotations: str | os.PathLike,
    images: str | os.PathLike | None = None,
    split: str = "test",
    check_files: bool = True,
) -> CaptionData:
    """Read a caption annotation file (see the module docstring)."""
    ann, records, paths = read_split(
        annotations, split, images, check_files,
        "give a caption JSON (Karpathy dataset_coco.json / dataset_flickr30k.json, or the NoCaps "
        "validation JSON)",
    )  # fmt: skip
    return CaptionData(
        paths,
        [r.image_id for r in records],  # type: ignore[misc]  # every format gives an id
        [list(r.captions) for r in records],
        ann.describe(split),
    )
