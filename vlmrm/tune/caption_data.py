"""Image–caption datasets for CLIP fine-tuning, and their seeded 80/10/10 split by image.

Read from local files only (nothing is downloaded):

* COCO captions JSON (``captions_train2017.json``: ``images`` with ``id``/``file_name``
  and ``annotations`` with ``image_id``/``caption``);
* Karpathy JSON (``dataset_coco.json``, ``dataset_flickr30k.json``: ``images`` with
  ``filename``, optional ``filepath``, and ``sentences`` with ``raw``);
* JSONL of ``{"image": ..., "caption": ...}`` rows (an image may appear on many rows);
* a local Hugging Face ``datasets`` folder (``save_to_disk``), ``.parquet`` or ``.arrow``
  file, or an image folder with ``metadata.jsonl``/``.csv`` — with an image and a text
  column. This needs the optional ``datasets`` package (``pip install vlmrm[hf]``); its
  images are written once as PNG files under ``<cache>/`` so that every image has a path.

Torch-free: the split is decided (and saved) before any model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError

SPLITS = ("train", "val", "test")
HF_SUFFIXES = (".parquet", ".arrow")


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


def _group(pairs: list[tuple[str, str]]) -> list[CaptionedImage]:
    by_image: dict[str, list[str]] = {}
    for image, caption in pairs:
        caption = " ".join(str(caption).split())
        if caption:
            by_image.setdefault(image, []).append(caption)
    return [CaptionedImage(img, tuple(caps)) for img, caps in by_image.items()]


def _coco(obj: dict, root: Path) -> list[tuple[str, str]]:
    files = {im["id"]: im["file_name"] for im in obj["images"]}
    out = []
    for ann in obj["annotations"]:
        if ann["image_id"] not in files:
            raise ConfigError(f"COCO annotation {ann.get('id')} names image_id {ann['image_id']} not in 'images'")
        out.append((os.fspath(root / files[ann["image_id"]]), ann["caption"]))
    return out


def _karpathy(obj: dict, root: Path) -> list[tuple[str, str]]:
    out = []
    for im in obj["images"]:
        rel = Path(im.get("filepath", "")) / im["filename"]
        path = root / rel if (root / rel).exists() or not (root / im["filename"]).exists() else root / im["filename"]
        out.extend((os.fspath(path), s["raw"] if isinstance(s, dict) else s) for s in im["sentences"])
    return out


def _jsonl(path: Path, root: Path) -> list[tuple[str, str]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{os.fspath(path)}:{n}: not a JSON object") from None
        if not isinstance(row, dict) or "image" not in row or "caption" not in row:
            raise ConfigError(f"{os.fspath(path)}:{n}: rows need 'image' and 'caption'")
        out.append((os.fspath(root / row["image"]), row["caption"]))
    return out


def _hf(path: Path, image_column: str, text_column: str, cache: Path) -> list[tuple[str, str]]:
    """Rows of a local Hugging Face dataset; its images are written to ``cache`` as PNG."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"{os.fspath(path)!r} is a Hugging Face dataset; reading it needs the datasets "
            "package: pip install 'vlmrm[hf]'"
        ) from None
    if path.is_dir() and (path / "dataset_info.json").exists():
        ds = datasets.load_from_disk(os.fspath(path))
    elif path.is_dir():
        ds = datasets.load_dataset("imagefolder", data_dir=os.fspath(path), split="train")
    elif path.suffix == ".parquet":
        ds = datasets.Dataset.from_parquet(os.fspath(path))
    else:
        ds = datasets.Dataset.from_file(os.fspath(path))
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets(list(ds.values()))
    missing = [c for c in (image_column, text_column) if c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"{os.fspath(path)!r} has no column {missing[0]!r} (columns: {ds.column_names}); "
            "set image_column= and text_column="
        )
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i, row in enumerate(ds):
        img, texts = row[image_column], row[text_column]
        file = cache / f"{i:08d}.png"
        if not file.exists():
            img.convert("RGB").save(file)
        for t in texts if isinstance(texts, list) else [texts]:
            out.append((os.fspath(file), t))
    return out


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
    root = Path(image_root) if image_root else (p if p.is_dir() else p.parent)
    if p.is_dir() or p.suffix in HF_SUFFIXES:
        pairs = _hf(p, image_column, text_column, Path(cache or p.parent / f"{p.name}.images"))
    elif p.suffix == ".jsonl":
        pairs = _jsonl(p, root)
    else:
        obj = _read_json(p)
        if isinstance(obj, dict) and "annotations" in obj and "images" in obj:
            pairs = _coco(obj, root)
        elif isinstance(obj, dict) and obj.get("images") and "sentences" in obj["images"][0]:
            pairs = _karpathy(obj, root)
        else:
            raise ConfigError(
                f"{os.fspath(p)!r} is neither COCO captions JSON (images + annotations) nor "
                "Karpathy JSON (images with sentences); see \"Fine-tune CLIP on image–caption data\" in docs/tuning.md"
            )
    data = _group(pairs)
    if len(data) < 3:
        raise ConfigError(f"{os.fspath(p)!r} has {len(data)} captioned images; a split needs at least 3")
    if check_files:
        absent = [d.image for d in data if not Path(d.image).is_file()]
        if absent:
            raise ConfigError(
                f"{len(absent)} image(s) of {os.fspath(p)!r} are missing, e.g. {absent[0]!r}; "
                "set image_root= to the image folder"
            )
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
