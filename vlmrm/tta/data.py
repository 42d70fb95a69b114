"""Test data for RLCF: ImageNet-style class folders and image-caption retrieval annotations.

Classification: ``root/<class folder>/**/<image>`` (``torchvision.datasets.ImageFolder``
layout). Class names come from, in order:

1. an explicit ``classnames`` file, or ``root/classnames.txt`` if present — either one
   name per line in sorted-folder order, or ``<folder> <name>`` lines (CoOp's ImageNet
   ``classnames.txt`` format);
2. ImageNet synset folders (``n01440764``…): the shipped wnid → name table, so ImageNet,
   -Sketch, -A and -R (their 200-class subsets are just the folders present) work as is;
3. ``classnames="imagenet"`` with folders ``0``…``999``: ImageNet-V2's layout;
4. otherwise the folder names, with ``_`` read as a space.

Retrieval: a Karpathy-split JSON (``{"images": [{"filename", "filepath"?, "split",
"sentences": [{"raw"}, …]}]}``, as for COCO/Flickr30k) or a LAVIS-style list of
``{"image": path, "caption": [str, …] | str}``. Images are found relative to ``images``
(default: the JSON's folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.tta.imagenet import WNID, imagenet_classnames, imagenet_wnid_to_name

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)
CLASSNAMES_FILE = "classnames.txt"


def abspath(path: str | os.PathLike | None) -> str | None:
    """An absolute, user-expanded path (``None`` stays ``None``): how a run records its data."""
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


@dataclass
class ClassificationData:
    """Image paths with integer labels, and the class names."""

    root: Path
    classnames: list[str]
    folders: list[str]
    samples: list[tuple[str, int]]  # (path relative to root, label)
    names_source: str = ""
    empty: list[str] = field(
        default_factory=list
    )  # class folders without images (still candidates)

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, i: int) -> Path:
        return self.root / self.samples[i][0]


def _read_classnames_file(path: Path, folders: list[str]) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"class-names file {os.fspath(path)!r} does not exist")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise ConfigError(f"class-names file {os.fspath(path)!r} is empty")
    folder_set = set(folders)
    mapping = {}
    for ln in lines:
        key, _, rest = ln.replace("\t", " ").partition(" ")
        if key in folder_set and rest.strip():
            mapping[key] = rest.strip()
    if mapping:  # "<folder> <name>" lines; may list more classes than are present (ImageNet-A/R)
        missing = [f for f in folders if f not in mapping]
        if missing:
            raise ConfigError(
                f"class-names file {os.fspath(path)!r} has no name for folder(s) {missing[:5]}"
                f"{' …' if len(missing) > 5 else ''}; write one '<folder> <name>' line per class folder"
            )
        return [mapping[f] for f in folders]
    if len(lines) != len(folders):
        raise ConfigError(
            f"class-names file {os.fspath(path)!r} has {len(lines)} names but {os.fspath(path.parent)!r} "
            f"has {len(folders)} class folders; give one name per folder (sorted folder order) or "
            "'<folder> <name>' lines"
        )
    return lines


def _resolve_classnames(
    rootp: Path,
    folders: list[str],
    classnames: str | os.PathLike | Sequence[str] | None,
    is_index: bool,
) -> tuple[list[str], str]:
    """The class names of ``folders`` and where they came from (the order of the module docstring)."""
    if classnames is not None and not isinstance(classnames, (str, os.PathLike)):
        names = [str(n) for n in classnames]
        if len(names) != len(folders):
            raise ConfigError(f"got {len(names)} class names for {len(folders)} class folders")
        source = "given list"
    elif classnames is not None and str(classnames) != "imagenet":
        names = _read_classnames_file(Path(os.fspath(classnames)).expanduser(), folders)
        source = os.fspath(classnames)
    elif classnames is None and (rootp / CLASSNAMES_FILE).is_file():
        names = _read_classnames_file(rootp / CLASSNAMES_FILE, folders)
        source = os.fspath(rootp / CLASSNAMES_FILE)
    elif all(WNID.match(f) for f in folders):
        table = imagenet_wnid_to_name()
        unknown = [f for f in folders if f not in table]
        if unknown:
            raise ConfigError(
                f"folders {unknown[:5]} look like WordNet ids but are not ImageNet-1k classes; "
                f"give a class-names file with classnames=<file>"
            )
        names = [table[f] for f in folders]
        source = f"ImageNet wnids ({len(folders)} of 1000 classes)"
    elif classnames == "imagenet" or (is_index and set(folders) == {str(i) for i in range(1000)}):
        if not is_index or any(int(f) >= 1000 for f in folders):
            raise ConfigError(
                "classnames=imagenet needs wnid folders (n01440764 …) or class-index folders 0 … 999 "
                "(ImageNet-V2 layout)"
            )
        all_names = imagenet_classnames()
        names = [all_names[int(f)] for f in folders]
        source = "ImageNet class indices (ImageNet-V2 layout)"
    elif is_index:
        raise ConfigError(
            f"the class folders of {os.fspath(rootp)!r} are numbers, which CLIP cannot read as class "
            f"names; give classnames=<file> (or put a {CLASSNAMES_FILE} there), or classnames=imagenet "
            "if they are ImageNet class indices"
        )
    else:
        names = [f.replace("_", " ") for f in folders]
        source = "folder names"
    return names, source


def load_class_folders(
    root: str | os.PathLike,
    classnames: str | os.PathLike | Sequence[str] | None = None,
) -> ClassificationData:
    """Scan ``root/<class>/…/<image>`` and resolve class names (see the module docstring).

    ``classnames``: a file path, ``"imagenet"`` (folders are wnids or ImageNet-V2 indices),
    a list of names (sorted-folder order), or ``None`` for automatic.
    """
    rootp = Path(os.fspath(root)).expanduser()
    if not rootp.exists():
        raise ConfigError(f"data folder {os.fspath(rootp)!r} does not exist")
    if not rootp.is_dir():
        raise ConfigError(
            f"data={os.fspath(rootp)!r} is a file; for task=classify give a folder with one "
            "sub-folder of images per class"
        )
    folders = sorted(d.name for d in rootp.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise ConfigError(
            f"{os.fspath(rootp)!r} has no class sub-folders; expected root/<class name>/<image files> "
            "(the ImageFolder layout)"
        )
    is_index = all(f.isdigit() for f in folders)
    if is_index and classnames in (None, "imagenet") and len(folders) > 1:
        folders = sorted(folders, key=int)
    samples: list[tuple[str, int]] = []
    empty = []
    for label, f in enumerate(folders):
        files = sorted(p for p in (rootp / f).rglob("*") if _is_image(p))
        if not files:
            empty.append(f)
        samples.extend((p.relative_to(rootp).as_posix(), label) for p in files)
    if not samples:
        raise ConfigError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under the class folders of {os.fspath(rootp)!r}"
        )

    names, source = _resolve_classnames(rootp, folders, classnames, is_index)
    bad = [f for f, n in zip(folders, names, strict=True) if not n.strip()]
    if bad:
        raise ConfigError(f"empty class name for folder(s) {bad[:5]}")
    return ClassificationData(rootp, names, folders, samples, source, empty)


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


def _caption_list(value, where: str) -> list[str]:
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


def _karpathy_entries(raw: dict, ann: Path, split: str) -> list[tuple[str, list[str]]]:
    """``(image path, captions)`` of the Karpathy entries in ``split``."""
    if not isinstance(raw["images"], list):
        raise ConfigError(f"{os.fspath(ann)!r}: 'images' must be a list")
    entries: list[tuple[str, list[str]]] = []
    for i, item in enumerate(raw["images"]):
        where = f"{ann.name}: images[{i}]"
        if not isinstance(item, dict) or "filename" not in item or "sentences" not in item:
            raise ConfigError(f"{where} needs 'filename' and 'sentences' keys")
        item_split = item.get("split", "test")
        if split != "all" and item_split != split and not (split == "train" and item_split == "restval"):
            continue
        rel = item["filename"]
        if item.get("filepath"):
            rel = f"{item['filepath']}/{rel}"
        entries.append((rel, _caption_list(item["sentences"], where)))
    if not entries:
        splits = sorted({str(it.get("split", "test")) for it in raw["images"] if isinstance(it, dict)})
        raise ConfigError(f"{os.fspath(ann)!r} has no images in split {split!r}; its splits are {splits}")
    return entries


def _retrieval_entries(raw: object, ann: Path, split: str) -> tuple[list[tuple[str, list[str]]], str]:
    """``(image path, captions)`` entries of a Karpathy or LAVIS file, and which it was."""
    if isinstance(raw, dict) and "images" in raw:
        return _karpathy_entries(raw, ann, split), f"Karpathy JSON, split={split}"
    if isinstance(raw, list):
        grouped: dict[str, list[str]] = {}
        for i, item in enumerate(raw):
            where = f"{ann.name}: [{i}]"
            if not isinstance(item, dict) or "image" not in item or "caption" not in item:
                raise ConfigError(f"{where} needs 'image' and 'caption' keys")
            grouped.setdefault(str(item["image"]), []).extend(_caption_list(item["caption"], where))
        return list(grouped.items()), "LAVIS JSON"
    raise ConfigError(
        f"{os.fspath(ann)!r} is neither a Karpathy-style {{'images': [...]}} file nor a LAVIS-style "
        "list of {'image', 'caption'}"
    )


def read_annotation_json(path: str | os.PathLike, expected: str) -> tuple[Path, Any]:
    """An annotation JSON file → ``(path, parsed)``; a missing file, a folder or bad JSON is
    one :class:`ConfigError` naming the file and, in ``expected``, what belongs there."""
    ann = Path(os.fspath(path)).expanduser()
    if not ann.is_file():
        kind = "a folder" if ann.is_dir() else "missing"
        raise ConfigError(f"data={os.fspath(ann)!r} is {kind}; {expected}")
    try:
        return ann, json.loads(ann.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{os.fspath(ann)!r} is not valid JSON: {exc}") from None


def image_root(images: str | os.PathLike | None, ann: Path) -> Path:
    """The folder an annotation file's image paths are relative to (default: the file's own)."""
    root = Path(os.fspath(images)).expanduser() if images else ann.parent
    if not root.is_dir():
        raise ConfigError(f"image folder {os.fspath(root)!r} does not exist; set images=<folder>")
    return root


def image_paths(rels: Sequence[str], root: Path, ann: Path, check_files: bool = True) -> list[Path]:
    """The image files an annotation file names, under ``root``.

    A Karpathy ``filepath/filename`` is also found when the images are stored flat under
    ``root``. With ``check_files`` a missing image is one :class:`ConfigError` (with a count).
    """
    paths = []
    for rel in rels:
        p = root / rel
        if not p.is_file() and (root / Path(rel).name).is_file():
            p = root / Path(rel).name  # Karpathy filepath given but images stored flat
        paths.append(p)
    if check_files:
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise ConfigError(
                f"{len(missing)} of {len(paths)} images listed in {ann.name} are missing under "
                f"{os.fspath(root)!r}, e.g. {os.fspath(missing[0])!r}; set images=<folder with the images>"
            )
    return paths


def load_retrieval(
    annotations: str | os.PathLike,
    images: str | os.PathLike | None = None,
    split: str = "test",
    check_files: bool = True,
    caption_norm: str = "none",
) -> RetrievalData:
    """Read a Karpathy-style or LAVIS-style caption file (see the module docstring).

    ``split`` selects Karpathy entries (``"test"``, ``"val"``, ``"train"``/``"restval"``,
    or ``"all"``); LAVIS files hold one split each and ignore it. ``caption_norm="lavis"``
    normalises every caption as LAVIS does (:func:`lavis_caption`).
    """
    if caption_norm not in CAPTION_NORMS:
        raise ConfigError(f"unknown caption_norm {caption_norm!r}; choose one of {CAPTION_NORMS}")
    ann, raw = read_annotation_json(
        annotations,
        "for task=retrieve give the caption annotation JSON "
        "(Karpathy {'images': [...]} or a LAVIS list of {'image', 'caption'})",
    )
    root = image_root(images, ann)
    entries, source = _retrieval_entries(raw, ann, split)
    if not entries:
        raise ConfigError(f"{os.fspath(ann)!r} lists no images")

    paths = image_paths([rel for rel, _ in entries], root, ann, check_files)
    captions, txt2img, img2txt = [], [], []
    for i, (_, caps) in enumerate(entries):
        if caption_norm == "lavis":
            caps = [lavis_caption(c) or c for c in caps]
        img2txt.append(list(range(len(captions), len(captions) + len(caps))))
        captions.extend(caps)
        txt2img.extend([i] * len(caps))
    return RetrievalData(paths, captions, txt2img, img2txt, source)
