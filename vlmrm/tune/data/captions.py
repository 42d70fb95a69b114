"""Image–caption datasets for CLIP fine-tuning, and their seeded 80/10/10 split by image.

Read from local files only (nothing is downloaded): every caption annotation format of
:mod:`vlmrm.datasets.annotations` (COCO captions, Karpathy — all its splits, since this
split is our own — LAVIS JSON, JSONL, CSV) and a local Hugging Face dataset
(:mod:`vlmrm.datasets.hf`, its images written once as PNG files under ``<cache>/``).
What fine-tuning adds is one list of images with all their captions (white space
collapsed), which its split and its retrieval metrics work on.

Torch-free: the split is decided (and saved) before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.datasets.annotations import read_annotations
from vlmrm.datasets.hf import is_hf_dataset, read_hf
from vlmrm.datasets.images import check_images, image_paths
from vlmrm.datasets.images import image_root as find_image_root
from vlmrm.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CaptionedImage:
    """One image (a path) and all its captions."""

    image: str
    captions: tuple[str, ...]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"caption file {os.fspath(path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{os.fspath(path)}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _group(pairs: Iterable[tuple[str, tuple[str, ...]]]) -> list[CaptionedImage]:
    """Captions by image file, with runs of white space collapsed: rows that reach the same
    file (a Karpathy path stored flat beside a plain one) are one image of the split."""
    by_image: dict[str, list[str]] = {}
    for image, captions in pairs:
        by_image.setdefault(image, []).extend(" ".join(c.split()) for c in captions)
    return [CaptionedImage(img, tuple(caps)) for img, caps in by_image.items()]


def load_caption_data(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    image_column: str = "image",
    text_column: str = "text",
    cache: str | os.PathLike | None = None,
    check_files: bool = True,
) -> list[CaptionedImage]:
    """Every image of an image–caption dataset with its captions (format by content)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"caption data {os.fspath(p)!r} does not exist")
    if is_hf_dataset(p):
        records = read_hf(p, image_column, text_column, Path(cache or p.parent / f"{p.name}.images"))
        data = _group((r.image, r.captions) for r in records)
        root, check_files = p, False  # the images were just written
    else:
        ann = read_annotations(p, "give COCO captions, Karpathy or LAVIS JSON, JSONL or CSV")
        root = find_image_root(image_root, ann.path, "image_root")
        paths = image_paths([r.image for r in ann.records], root, ann.path, check_files=False)
        data = _group((os.fspath(f), r.captions) for f, r in zip(paths, ann.records, strict=True))
    if len(data) < 3:
        raise ConfigError(f"{os.fspath(p)!r} has {len(data)} captioned images; a split needs at least 3")
    if check_files:
        check_images([Path(d.image) for d in data], root, p, "image_root")
    return data


def split_by_image(
    data: list[CaptionedImage], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[CaptionedImage]]:
    """A seeded split by image: every caption of an image lands in the same part.

    The order is a permutation of the images sorted by path, drawn from ``seed``: the
    same data and seed give the same split whatever the file's row order. Val and test
    get at least one image each.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ConfigError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    ordered = sorted(data, key=lambda d: d.image)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n = len(ordered)
    n_test = max(1, round(fractions[2] * n))
    n_val = max(1, round(fractions[1] * n))
    shuffled = [ordered[i] for i in perm]
    return {
        "test": shuffled[:n_test],
        "val": shuffled[n_test : n_test + n_val],
        "train": shuffled[n_test + n_val :],
    }


def save_split(path: str | os.PathLike, split: dict[str, list[CaptionedImage]], seed: int) -> None:
    """Write the split (image paths per part, the seed and a digest) as JSON, atomically."""
    from vlmrm.runtime.atomic import atomic_write_json

    images = {k: [d.image for d in split[k]] for k in SPLITS}
    digest = hashlib.sha256(json.dumps(images, sort_keys=True).encode()).hexdigest()[:16]
    atomic_write_json(path, {"seed": seed, "digest": digest, **images})


def load_split(path: str | os.PathLike, data: list[CaptionedImage]) -> dict[str, list[CaptionedImage]]:
    """The split saved by :func:`save_split`, applied to ``data`` (a resumed or evaluated run)."""
    saved = _read_json(Path(path))
    by_image = {d.image: d for d in data}
    out = {}
    for part in SPLITS:
        missing = [i for i in saved.get(part, []) if i not in by_image]
        if missing:
            raise ConfigError(f"{os.fspath(path)}: image {missing[0]!r} of the saved split is not in the data")
        out[part] = [by_image[i] for i in saved[part]]
    return out
