"""Where the images an annotation file names are on disk: the one image resolver.

Annotation files name images relative to a folder that is rarely the file's own (COCO's
``val2014/``, Flickr30k's ``flickr30k-images/``), and Karpathy's ``filepath`` subfolder is
often flattened away when the images are copied. Every command finds images here, so that
a file which works for one command works for all, and a missing image is always the same
one line naming the file and the setting that fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vlmrm.errors import ConfigError


def image_root(images: str | os.PathLike | None, annotation: Path, setting: str = "images") -> Path:
    """The folder an annotation file's image paths are relative to: ``images`` if given, else
    the file's own folder (a folder ``annotation`` is its own root); it must exist."""
    if images:
        root = Path(os.fspath(images)).expanduser()
    else:
        root = annotation if annotation.is_dir() else annotation.parent
    if not root.is_dir():
        raise ConfigError(
            f"image folder {os.fspath(root)!r} does not exist; set {setting}=<folder>"
        )
    return root


def resolve_image(root: Path, rel: str) -> Path:
    """``root/rel``, or ``root/<file name>`` when only that exists: a Karpathy
    ``filepath/filename`` whose images were stored flat. Absolute paths stay as they are."""
    p = root / rel
    if not p.is_file() and (root / Path(rel).name).is_file():
        return root / Path(rel).name
    return p


def check_images(paths: Sequence[Path], root: Path, source: Path, setting: str = "images") -> None:
    """One :class:`ConfigError` (with a count and an example) if any of ``paths`` is missing."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(
            f"{len(missing)} of {len(paths)} images listed in {source.name} are missing under "
            f"{os.fspath(root)!r}, e.g. {os.fspath(missing[0])!r}; set {setting}=<folder with the images>"
        )


def image_paths(
    rels: Sequence[str],
    root: Path,
    source: Path,
    check_files: bool = True,
    setting: str = "images",
) -> list[Path]:
    """The files ``rels`` name under ``root`` (:func:`resolve_image`), checked with
    :func:`check_images` unless ``check_files`` is false."""
    paths = [resolve_image(root, rel) for rel in rels]
    if check_files:
        check_images(paths, root, source, setting)
    return paths


def find_images(
    rels: Sequence[str],
    images: str | os.PathLike | None,
    annotation: Path,
    check_files: bool = True,
    setting: str = "images",
) -> list[Path]:
    """The files an annotation file names: under :func:`image_root` of ``images`` and
    ``annotation``, by :func:`image_paths`; ``setting`` is the key the error tells to set."""
    root = image_root(images, annotation, setting)
    return image_paths(rels, root, annotation, check_files, setting)
