"""Captioning data: images with their reference captions, read from local files only.

Two formats, told apart by their keys:

* **Karpathy split JSON** (COCO, Flickr30k): ``{"images": [{"filename", "filepath"?,
  "split", "sentences": [{"raw"}...], "cocoid"|"imgid"?}]}``; ``split=`` picks
  ``test``/``val``/``train`` (with ``restval``)/``all``. The image id is ``cocoid``, else
  ``imgid``, else the file name's stem.
* **COCO captions JSON** (the NoCaps validation file, COCO ``captions_*.json``):
  ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}`` (one
  split per file; ``split=`` is ignored).

Images are looked up under ``images=`` (default: the JSON's folder), also flat when the
Karpathy ``filepath`` subfolder is absent. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vlmrm.errors import ConfigError
from vlmrm.tta.data import _caption_list, image_paths, image_root, read_annotation_json

SPLITS = ("test", "val", "train", "all")


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


def _karpathy(raw: dict, name: str, split: str) -> list[tuple[str, object, list[str]]]:
    if not isinstance(raw["images"], list):
        raise ConfigError(f"{name}: 'images' must be a list")
    out = []
    for i, item in enumerate(raw["images"]):
        where = f"{name}: images[{i}]"
        if not isinstance(item, dict) or "filename" not in item or "sentences" not in item:
            raise ConfigError(f"{where} needs 'filename' and 'sentences' keys (Karpathy format)")
        item_split = item.get("split", "test")
        if (
            split != "all"
            and item_split != split
            and not (split == "train" and item_split == "restval")
        ):
            continue
        rel = f"{item['filepath']}/{item['filename']}" if item.get("filepath") else item["filename"]
        image_id = item.get("cocoid", item.get("imgid", Path(item["filename"]).stem))
        out.append((rel, image_id, _caption_list(item["sentences"], where)))
    if not out:
        splits = sorted(
            {str(it.get("split", "test")) for it in raw["images"] if isinstance(it, dict)}
        )
        raise ConfigError(f"{name} has no images in split {split!r}; its splits are {splits}")
    return out


def _coco(raw: dict, name: str) -> list[tuple[str, object, list[str]]]:
    images, anns = raw.get("images"), raw.get("annotations")
    if not isinstance(images, list) or not isinstance(anns, list):
        raise ConfigError(
            f"{name}: 'images' and 'annotations' must be lists (COCO captions format)"
        )
    refs: dict[object, list[str]] = {}
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or "image_id" not in a or "caption" not in a:
            raise ConfigError(f"{name}: annotations[{i}] needs 'image_id' and 'caption' keys")
        refs.setdefault(a["image_id"], []).extend(
            _caption_list(a["caption"], f"{name}: annotations[{i}]")
        )
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ConfigError(f"{name}: images[{i}] needs 'id' and 'file_name' keys")
        if im["id"] not in refs:
            raise ConfigError(
                f"{name}: image id {im['id']!r} ({im['file_name']}) has no caption annotation"
            )
        out.append((im["file_name"], im["id"], refs[im["id"]]))
    return out


def load_captions(
    annotations: str | os.PathLike,
    images: str | os.PathLike | None = None,
    split: str = "test",
    check_files: bool = True,
) -> CaptionData:
    """Read a Karpathy or COCO-captions JSON (see the module docstring)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {SPLITS}")
    ann, raw = read_annotation_json(
        annotations,
        "give a caption JSON (Karpathy dataset_coco.json / dataset_flickr30k.json, or the NoCaps "
        "validation JSON)",
    )
    if isinstance(raw, dict) and "annotations" in raw:
        entries, source = _coco(raw, ann.name), "COCO captions JSON"
    elif isinstance(raw, dict) and "images" in raw:
        entries, source = _karpathy(raw, ann.name, split), f"Karpathy JSON, split={split}"
    else:
        raise ConfigError(
            f"{os.fspath(ann)!r} is neither a Karpathy {{'images': [...]}} file nor a COCO captions "
            "file {'images': [...], 'annotations': [...]}"
        )
    if not entries:
        raise ConfigError(f"{os.fspath(ann)!r} lists no images")
    root = image_root(images, ann)
    paths = image_paths([rel for rel, _, _ in entries], root, ann, check_files)
    return CaptionData(paths, [e[1] for e in entries], [e[2] for e in entries], source)
