"""Caption annotation files of every supported format, read into one record type.

Fine-tuning, captioning and test-time retrieval all read the same public files; each format
is parsed here once, so a file that one command reads, every command reads the same way.
The format is told apart by the file's content (JSON) or its suffix (``.jsonl``, ``.csv``):

* **COCO captions JSON** (``captions_train2017.json``, the NoCaps validation file):
  ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``;
  one split per file.
* **Karpathy split JSON** (``dataset_coco.json``, ``dataset_flickr30k.json``):
  ``{"images": [{"filename", "filepath"?, "split"?, "sentences": [{"raw"} | str],
  "cocoid" | "imgid"?}]}``; an entry without ``split`` is a test image.
* **LAVIS JSON**: a list of ``{"image": path, "caption": str | [str, ...]}``; one split.
* **JSONL** (``.jsonl``): one ``{"image", "caption"}`` object a line; one split.
* **CSV** (``.csv``): a header with ``image`` and ``caption`` columns; one split.

Rows of the last three that name the same image are one record. A record's image is the
path as the file writes it; :mod:`vlmrm.datasets.images` finds it on disk. Local Hugging
Face datasets are read by :mod:`vlmrm.datasets.hf` into the same records.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrm.datasets.images import find_images
from vlmrm.errors import ConfigError

#: The splits of a Karpathy file that ``split=`` may pick (``train`` includes ``restval``).
KARPATHY_SPLITS = ("test", "val", "train", "all")
#: What each format is called in a run's record and in messages.
FORMATS = {
    "coco": "COCO captions JSON",
    "karpathy": "Karpathy JSON",
    "lavis": "LAVIS JSON",
    "jsonl": "JSONL",
    "csv": "CSV",
}


@dataclass(frozen=True)
class CaptionRecord:
    """One image of an annotation file with its captions (stripped, in file order).

    ``image`` is the path as the file writes it (Karpathy: ``filepath/filename``);
    ``split`` is the Karpathy split (``None`` where the file is one split); ``image_id`` is
    the id the file gives (COCO ``id``, Karpathy ``cocoid``/``imgid``), else the file stem.
    """

    image: str
    captions: tuple[str, ...]
    split: str | None = None
    image_id: int | str | None = None


@dataclass(frozen=True)
class AnnotationFile:
    """The records of one annotation file, and which format it was read as."""

    path: Path
    format: str
    records: list[CaptionRecord]

    @property
    def source(self) -> str:
        """The format's name, as a run records where its data came from."""
        return FORMATS[self.format]

    def describe(self, split: str) -> str:
        """The format, and ``split`` where the format has splits (Karpathy)."""
        return self.source + (f", split={split}" if self.format == "karpathy" else "")


def read_annotation_json(path: str | os.PathLike, expected: str) -> tuple[Path, Any]:
    """A JSON file → ``(path, parsed)``; a missing file, a folder or bad JSON is one
    :class:`ConfigError` naming the file and, in ``expected``, what belongs there."""
    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        kind = "a folder" if p.is_dir() else "missing"
        raise ConfigError(f"data={os.fspath(p)!r} is {kind}; {expected}")
    try:
        return p, json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{os.fspath(p)!r} is not valid JSON: {exc}") from None


def caption_list(value: object, where: str) -> list[str]:
    """The captions of one entry: a string, or a list of strings or ``{"raw"|"caption"}``
    objects (Karpathy's sentences); each stripped and non-empty, else one error at ``where``."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: captions must be a non-empty list of strings")
    out = []
    for c in value:
        if isinstance(c, dict):
            c = c.get("raw", c.get("caption"))
        if not isinstance(c, str) or not c.strip():
            raise ConfigError(f"{where}: every caption must be a non-empty string, got {c!r}")
        out.append(c.strip())
    return out


def _coco(raw: dict, name: str) -> list[CaptionRecord]:
    images, anns = raw["images"], raw["annotations"]
    if not isinstance(images, list) or not isinstance(anns, list):
        raise ConfigError(
            f"{name}: 'images' and 'annotations' must be lists (COCO captions format)"
        )
    files: dict[object, str] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise ConfigError(f"{name}: images[{i}] needs 'id' and 'file_name' keys")
        files[im["id"]] = im["file_name"]
    refs: dict[object, list[str]] = {}
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or "image_id" not in a or "caption" not in a:
            raise ConfigError(f"{name}: annotations[{i}] needs 'image_id' and 'caption' keys")
        if a["image_id"] not in files:
            raise ConfigError(
                f"{name}: annotations[{i}] names image_id {a['image_id']!r}, which 'images' lacks"
            )
        refs.setdefault(a["image_id"], []).extend(
            caption_list(a["caption"], f"{name}: annotations[{i}]")
        )
    for image_id, file in files.items():
        if image_id not in refs:
            raise ConfigError(f"{name}: image id {image_id!r} ({file}) has no caption annotation")
    return [CaptionRecord(file, tuple(refs[i]), None, i) for i, file in files.items()]


def _karpathy(raw: dict, name: str) -> list[CaptionRecord]:
    if not isinstance(raw["images"], list):
        raise ConfigError(f"{name}: 'images' must be a list")
    out = []
    for i, item in enumerate(raw["images"]):
        where = f"{name}: images[{i}]"
        if not isinstance(item, dict) or "filename" not in item or "sentences" not in item:
            raise ConfigError(f"{where} needs 'filename' and 'sentences' keys (Karpathy format)")
        rel = f"{item['filepath']}/{item['filename']}" if item.get("filepath") else item["filename"]
        image_id = item.get("cocoid", item.get("imgid", Path(item["filename"]).stem))
        captions = tuple(caption_list(item["sentences"], where))
        out.append(CaptionRecord(rel, captions, str(item.get("split", "test")), image_id))
    return out


def _rows(rows: Iterable[tuple[str, object]], group: bool = True) -> list[CaptionRecord]:
    """``(where, row)`` pairs of ``{"image", "caption"}`` rows → one record per image, or
    (``group=False``) one per row in file order."""
    records: list[CaptionRecord] = []
    for where, row in rows:
        if not isinstance(row, dict) or "image" not in row or "caption" not in row:
            raise ConfigError(f"{where} needs 'image' and 'caption' keys")
        image = str(row["image"])
        image_id = row.get("image_id", Path(image).stem)
        records.append(
            CaptionRecord(image, tuple(caption_list(row["caption"], where)), None, image_id)
        )
    if not group:
        return records
    grouped: dict[str, CaptionRecord] = {}
    for r in records:
        first = grouped.setdefault(r.image, r)
        if first is not r:
            grouped[r.image] = CaptionRecord(
                r.image, first.captions + r.captions, None, first.image_id
            )
    return list(grouped.values())


def _jsonl(path: Path, group: bool) -> list[CaptionRecord]:
    def rows():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    yield f"{os.fspath(path)}:{n}:", json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{os.fspath(path)}:{n}: not a JSON object") from None

    return _rows(rows(), group)


def _csv(path: Path, group: bool) -> list[CaptionRecord]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("image", "caption") if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"{os.fspath(path)}: the header has no {missing[0]!r} column "
                f"(columns: {reader.fieldnames}); write an 'image' and a 'caption' column"
            )
        return _rows(((f"{os.fspath(path)}:{reader.line_num}:", row) for row in reader), group)


def detect_format(path: Path, raw: object = None) -> str:
    """The format of an annotation file (see the module docstring), or one error naming all."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".csv"):
        return suffix[1:]
    if isinstance(raw, dict) and "images" in raw and "annotations" in raw:
        return "coco"
    if isinstance(raw, dict) and "images" in raw:
        return "karpathy"
    if isinstance(raw, list) and all(isinstance(row, dict) for row in raw):
        return "lavis"
    raise ConfigError(
        f"{os.fspath(path)!r} is neither COCO captions JSON {{'images', 'annotations'}}, Karpathy "
        "JSON {'images': [{'filename', 'sentences'}]} nor a LAVIS list of {'image', 'caption'} "
        "(nor .jsonl/.csv rows of image and caption)"
    )


def read_annotations(
    path: str | os.PathLike,
    expected: str = "give a caption annotation file (COCO captions, Karpathy or LAVIS JSON, "
    "JSONL or CSV)",
    *,
    group_rows: bool = True,
) -> AnnotationFile:
    """Read an annotation file of any supported format (see the module docstring).

    ``expected`` ends the error for a missing file or a folder: what the command wants there.
    ``group_rows=False`` keeps one record per row of a row format (LAVIS, JSONL, CSV), in
    file order, for readers whose rows are their items.
    """
    p = Path(os.fspath(path)).expanduser()
    if p.suffix.lower() in (".jsonl", ".csv"):
        if not p.is_file():
            raise ConfigError(
                f"data={os.fspath(p)!r} is {'a folder' if p.is_dir() else 'missing'}; {expected}"
            )
        fmt = detect_format(p)
        try:
            records = _jsonl(p, group_rows) if fmt == "jsonl" else _csv(p, group_rows)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{os.fspath(p)!r} is not UTF-8 text: {exc}") from None
    else:
        p, raw = read_annotation_json(p, expected)
        fmt = detect_format(p, raw)
        name = p.name
        if fmt == "coco":
            records = _coco(raw, name)
        elif fmt == "karpathy":
            records = _karpathy(raw, name)
        else:
            records = _rows(((f"{name}: [{i}]", row) for i, row in enumerate(raw)), group_rows)
    if not records:
        raise ConfigError(f"{os.fspath(p)!r} lists no images")
    return AnnotationFile(p, fmt, records)


def select_split(records: Sequence[CaptionRecord], split: str, path: Path) -> list[CaptionRecord]:
    """The records of a Karpathy ``split`` (``train`` includes ``restval``; ``all`` is every
    one); a file without splits is one split, returned whole."""
    if split == "all" or all(r.split is None for r in records):
        return list(records)
    out = [r for r in records if r.split == split or (split == "train" and r.split == "restval")]
    if not out:
        splits = sorted({str(r.split) for r in records})
        raise ConfigError(
            f"{os.fspath(path)!r} has no images in split {split!r}; its splits are {splits}"
        )
    return out


def read_split(
    annotations: str | os.PathLike,
    split: str,
    images: str | os.PathLike | None = None,
    check_files: bool = True,
    expected: str = "give a caption annotation file",
) -> tuple[AnnotationFile, list[CaptionRecord], list[Path]]:
    """The file, the records of its ``split`` (:func:`select_split`) and their image files
    (:func:`vlmrm.datasets.images.find_images`): what a command that scores images against
    their captions reads."""
    if split not in KARPATHY_SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {KARPATHY_SPLITS}")
    ann = read_annotations(annotations, expected)
    records = select_split(ann.records, split, ann.path)
    return ann, records, find_images([r.image for r in records], images, ann.path, check_files)
