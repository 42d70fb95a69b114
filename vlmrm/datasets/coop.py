"""Fine-grained classification sets as CoOp ships them, read as :class:`ClassificationData`.

CoOp (Zhou et al., 2022) ships one ``split_zhou_<Dataset>.json`` per dataset with
``train``/``val``/``test`` lists of ``[image path, label, class name]``; TPT and RLCF
evaluate on its ``test`` list. The split file sits in the dataset's folder, beside the
folder its own archive unpacked to, and the paths inside it are relative to that image
folder (:data:`COOP_SPLIT_FILES`). Two sets come without a split file:

* FGVCAircraft is read from its archive's lists (``images_variant_{train,val,test}.txt``,
  ``<image id> <variant>`` per line, the classes in ``variants.txt``, the images in
  ``images/<id>.jpg``), as CoOp's own reader does: ``data=`` is the archive's ``data/``
  folder (CoOp renames it ``fgvc_aircraft/``) or the ``fgvc-aircraft-2013b/`` above it.
* ImageNet is read from CoOp's layout: ``data=<imagenet>`` holding ``images/val/<wnid>/``
  (and ``images/train/``) with ``classnames.txt`` (``<wnid> <name>`` lines); its ``val``
  images are the test set (``split=test`` reads them).

The images stay where the archive put them (``images=`` overrides the folder). Whether a
``data=`` is one of these sets (:func:`is_coop_split`) also decides TTA's reference preset
for them (:data:`vlmrm.tta.settings.FINEGRAINED_PRESET`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlmrm.datasets.classes import ClassificationData, load_class_folders
from vlmrm.datasets.images import check_images
from vlmrm.errors import ConfigError

#: CoOp's split files, and the image folder (beside the file) their paths are relative to:
#: the folder the dataset's own archive unpacks to ("" is the split file's own folder).
COOP_SPLIT_FILES = {
    "split_zhou_OxfordFlowers.json": "jpg",
    "split_zhou_DescribableTextures.json": "images",
    "split_zhou_OxfordPets.json": "images",
    "split_zhou_StanfordCars.json": "",
    "split_zhou_UCF101.json": "UCF-101-midframes",
    "split_zhou_Caltech101.json": "101_ObjectCategories",
    "split_zhou_Food101.json": "images",
    "split_zhou_SUN397.json": "SUN397",
    "split_zhou_EuroSAT.json": "2750",
}
SPLITS = ("train", "val", "test")
#: FGVCAircraft's class list and per-split image lists (in the archive's ``data/`` folder).
AIRCRAFT_CLASSES = "variants.txt"
AIRCRAFT_LIST = "images_variant_{split}.txt"


def _path(path: str | os.PathLike) -> Path:
    return Path(os.fspath(path)).expanduser()


def aircraft_folder(path: str | os.PathLike) -> Path | None:
    """FGVCAircraft's ``data/`` folder if ``data=`` names it (or the archive folder above it)."""
    p = _path(path)
    for folder in (p, p / "data"):
        if (folder / AIRCRAFT_CLASSES).is_file() and (folder / AIRCRAFT_LIST.format(split="test")).is_file():
            return folder
    return None


def imagenet_folder(path: str | os.PathLike) -> Path | None:
    """``data=`` if it is CoOp's ImageNet folder (``images/val/`` and ``classnames.txt``)."""
    p = _path(path)
    if (p / "images" / "val").is_dir() and (p / "classnames.txt").is_file():
        return p
    return None


def is_coop_split(path: str | os.PathLike) -> bool:
    """Whether ``data=`` names a fine-grained set as CoOp reads it: a split file (a ``.json``
    file, not a class folder) or FGVCAircraft's folder (TTA gives these its fine-grained preset)."""
    p = _path(path)
    return (p.is_file() and p.suffix.lower() == ".json") or aircraft_folder(p) is not None


def is_coop_dataset(path: str | os.PathLike) -> bool:
    """Whether ``data=`` is read by this module (a split file, FGVCAircraft or CoOp's ImageNet),
    so that ``split=`` picks its list."""
    return is_coop_split(path) or imagenet_folder(path) is not None


def load_coop_dataset(
    path: str | os.PathLike, images: str | os.PathLike | None = None, split: str = "test",
    classnames: str | os.PathLike | None = None,
) -> ClassificationData:
    """The ``split`` list of a CoOp dataset (see the module docstring) as :class:`ClassificationData`."""
    if split not in SPLITS:
        raise ConfigError(f"a CoOp dataset has the splits {SPLITS}; got split={split!r}")
    folder = aircraft_folder(path)
    if folder is not None:
        return load_aircraft(folder, images, split)
    folder = imagenet_folder(path)
    if folder is not None:
        return load_coop_imagenet(folder, split, classnames)
    return load_coop_split(path, images, split)


def load_aircraft(
    folder: str | os.PathLike, images: str | os.PathLike | None = None, split: str = "test"
) -> ClassificationData:
    """FGVCAircraft's ``split`` list (``images_variant_<split>.txt``), labelled by the line
    of its variant in ``variants.txt``; ``split=test`` is the reference's test set."""
    data = aircraft_folder(folder) or _path(folder)
    classes = [x.strip() for x in _read_text(data / AIRCRAFT_CLASSES).splitlines() if x.strip()]
    label = {name: i for i, name in enumerate(classes)}
    listing = data / AIRCRAFT_LIST.format(split=split)
    samples = []
    for n, line in enumerate(_read_text(listing).splitlines(), 1):
        if not line.strip():
            continue
        image, _, variant = line.strip().partition(" ")
        if variant not in label:
            raise ConfigError(
                f"{os.fspath(listing)}:{n}: variant {variant!r} is not in {AIRCRAFT_CLASSES}; "
                "lines must read '<image id> <variant>'"
            )
        samples.append((f"{image}.jpg", label[variant]))
    if len(classes) < 2 or not samples:
        raise ConfigError(f"{os.fspath(data)}: FGVCAircraft needs >= 2 variants and a non-empty {listing.name}")
    root = _path(images) if images else data / "images"
    _check_images(root, samples, listing)
    return ClassificationData(root, classes, classes, samples, f"FGVCAircraft {listing.name}")


def load_coop_imagenet(
    folder: str | os.PathLike, split: str = "test", classnames: str | os.PathLike | None = None
) -> ClassificationData:
    """CoOp's ImageNet: ``images/val`` (the test set, ``split=test|val``) or ``images/train``,
    named by ``classnames.txt``."""
    p = _path(folder)
    sub = p / "images" / ("train" if split == "train" else "val")
    data = load_class_folders(sub, classnames or p / "classnames.txt")
    data.names_source = f"CoOp ImageNet {sub.name}/ ({data.names_source})"
    return data


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from None


def _check_images(root: Path, samples: list[tuple[str, int]], source: Path) -> None:
    check_images([root / s for s, _ in samples], root, source)


def _image_root(split_file: Path, images: str | os.PathLike | None, first: str) -> Path:
    """``images=``, else the folder CoOp's layout names for this split file, else the split
    file's folder or one folder below it that holds the first image (a renamed file)."""
    if images:
        return _path(images)
    here = split_file.parent
    known = COOP_SPLIT_FILES.get(split_file.name)
    default = here if known is None else here / known
    below = sorted(d for d in here.iterdir() if d.is_dir() and not d.name.startswith("."))
    return next((d for d in (default, here, *below) if (d / first).is_file()), default)


def load_coop_split(
    path: str | os.PathLike, images: str | os.PathLike | None = None, split: str = "test"
) -> ClassificationData:
    """The ``split`` list of a CoOp split file as :class:`ClassificationData`.

    Class names are the file's (``_`` read as a space), ordered by label; a label missing
    from this split still gets its name from the other lists.
    """
    p = _path(path)
    if split not in SPLITS:
        raise ConfigError(f"a CoOp split file has the splits {SPLITS}; got split={split!r}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read CoOp split file {os.fspath(p)!r}: {exc}") from None
    if not isinstance(raw, dict) or split not in raw:
        raise ConfigError(
            f"{os.fspath(p)!r} is not a CoOp split file (a JSON object with {', '.join(SPLITS)} lists of "
            "[image, label, class name])"
        )
    names: dict[int, str] = {}
    for part in SPLITS:
        for row in raw.get(part, []):
            if not (isinstance(row, list) and len(row) == 3):
                raise ConfigError(f"{os.fspath(p)}: {part} rows must be [image, label, class name], got {row!r}")
            names.setdefault(int(row[1]), str(row[2]).replace("_", " "))
    n = max(names) + 1 if names else 0
    missing = [k for k in range(n) if k not in names]
    if missing or n < 2:
        raise ConfigError(f"{os.fspath(p)}: labels must be 0..C-1 with C >= 2; label {missing[:1] or n} is absent")
    samples = [(str(row[0]), int(row[1])) for row in raw[split]]
    if not samples:
        raise ConfigError(f"{os.fspath(p)}: the {split} list is empty")
    root = _image_root(p, images, samples[0][0])
    _check_images(root, samples, p)
    classnames = [names[k] for k in range(n)]
    return ClassificationData(root, classnames, classnames, samples, f"CoOp split {p.name} ({split})")
