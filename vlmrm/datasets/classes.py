"""Labelled-class image datasets: class folders and the names CLIP reads for them.

A classification set is ``root/<class folder>/**/<image>`` (``torchvision.datasets.ImageFolder``
layout). CLIP classifies by the *names* of the classes, and folder names are often ids,
so the names come from, in order:

1. an explicit ``classnames`` file, or ``root/classnames.txt`` if present — either one
   name per line in sorted-folder order, or ``<folder> <name>`` lines (CoOp's ImageNet
   ``classnames.txt`` format);
2. ImageNet synset folders (``n01440764``…): the shipped wnid → name table
   (:mod:`vlmrm.datasets.imagenet`), so ImageNet, -Sketch, -A and -R (their 200-class
   subsets are just the folders present) work as is;
3. ``classnames="imagenet"`` with folders ``0``…``999``: ImageNet-V2's layout;
4. otherwise the folder names, with ``_`` read as a space.

CoOp's split files and FGVCAircraft's lists give the same :class:`ClassificationData`
(:mod:`vlmrm.datasets.coop`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlmrm.datasets.imagenet import WNID, imagenet_classnames, imagenet_wnid_to_name
from vlmrm.errors import ConfigError

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
