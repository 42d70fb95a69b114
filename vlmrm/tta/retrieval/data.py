"""Image–caption retrieval test data for RLCF, as the reference reads it.

The annotation file (Karpathy, LAVIS, COCO captions, JSONL or CSV) is read by
:mod:`vlmrm.datasets.annotations` and its images found by :mod:`vlmrm.datasets.images`;
what is RLCF's own is the shape retrieval needs (captions flattened in image order, with
the index maps both ways) and LAVIS's caption cleaning, which the reference applies.
Class-folder data moved to :mod:`vlmrm.datasets.classes`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vlmrm.datasets.annotations import read_split
from vlmrm.errors import ConfigError


@dataclass
class RetrievalData:
    """Images with their captions; captions are flattened in image order."""

    image_paths: list[Path]
    captions: list[str]
    txt2img: list[int]
    img2txt: list[list[int]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.image_paths)


#: Caption normalisations of the retrieval data: LAVIS's ``pre_caption`` (the reference) or none.
CAPTION_NORMS = ("lavis", "none")


def lavis_caption(caption: str, max_words: int = 50) -> str:
    """LAVIS's ``pre_caption``: lower case, the punctuation ``.!"()*#:;~`` as spaces, runs of
    spaces collapsed, at most ``max_words`` words — how the RLCF reference reads captions."""
    import re

    text = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


def load_retrieval(
    annotations: str | os.PathLike,
    images: str | os.PathLike | None = None,
    split: str = "test",
    check_files: bool = True,
    caption_norm: str = "none",
) -> RetrievalData:
    """Read a caption annotation file (:func:`vlmrm.datasets.annotations.read_annotations`).

    ``split`` selects Karpathy entries (``"test"``, ``"val"``, ``"train"``/``"restval"``,
    or ``"all"``); the other formats hold one split each and ignore it. ``caption_norm="lavis"``
    normalises every caption as LAVIS does (:func:`lavis_caption`).
    """
    if caption_norm not in CAPTION_NORMS:
        raise ConfigError(f"unknown caption_norm {caption_norm!r}; choose one of {CAPTION_NORMS}")
    ann, records, paths = read_split(
        annotations, split, images, check_files,
        "for task=retrieve give the caption annotation JSON "
        "(Karpathy {'images': [...]} or a LAVIS list of {'image', 'caption'})",
    )  # fmt: skip
    captions, txt2img, img2txt = [], [], []
    for i, record in enumerate(records):
        caps = list(record.captions)
        if caption_norm == "lavis":
            caps = [lavis_caption(c) or c for c in caps]
        img2txt.append(list(range(len(captions), len(captions) + len(caps))))
        captions.extend(caps)
        txt2img.extend([i] * len(caps))
    return RetrievalData(paths, captions, txt2img, img2txt, ann.describe(split))

