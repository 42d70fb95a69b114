"""Fine-grained classification sets in CoOp's split files, and the reference preset for them.

CoOp (Zhou et al., 2022) ships one ``split_zhou_<Dataset>.json`` per dataset with
``train``/``val``/``test`` lists of ``[image path, label, class name]``; TPT and RLCF
evaluate on its ``test`` list. The images stay where the dataset's own archive put them
(``images=``, default: the split file's folder). On these sets the reference runs use
AugMix on the random views and 5 steps (:data:`FINEGRAINED_PRESET`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlmrm.errors import ConfigError
from vlmrm.tta.data import ClassificationData

#: The datasets with CoOp split files, and the image folder each archive unpacks to.
COOP_DATASETS = {
    "Flowers102": "jpg", "DTD": "images", "OxfordPets": "images", "StanfordCars": "",
    "UCF101": "UCF-101-midframes", "Caltech101": "101_ObjectCategories", "Food101": "images",
    "SUN397": "SUN397", "FGVCAircraft": "images", "EuroSAT": "2750",
}  # fmt: skip
#: The reference settings for the fine-grained sets (the ImageNet sets keep the defaults).
FINEGRAINED_PRESET = {"steps": 5, "augmix": True}
SPLITS = ("train", "val", "test")


def is_coop_split(path: str | os.PathLike) -> bool:
    """Whether ``data=`` names a CoOp split file (a ``.json`` file, not a class folder)."""
    p = Path(os.fspath(path)).expanduser()
    return p.is_file() and p.suffix.lower() == ".json"


def _image_root(split_file: Path, images: str | os.PathLike | None) -> Path:
    if images:
        return Path(os.fspath(images)).expanduser()
    for name, sub in COOP_DATASETS.items():
        if name.lower() in split_file.stem.lower() and sub and (split_file.parent / sub).is_dir():
            return split_file.parent / sub
    return split_file.parent


def load_coop_split(
    path: str | os.PathLike, images: str | os.PathLike | None = None, split: str = "test"
) -> ClassificationData:
    """The ``split`` list of a CoOp split file as :class:`ClassificationData`.

    Class names are the file's (``_`` read as a space), ordered by label; a label missing
    from this split still gets its name from the other lists.
    """
    p = Path(os.fspath(path)).expanduser()
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
    root = _image_root(p, images)
    samples = [(str(row[0]), int(row[1])) for row in raw[split]]
    if not samples:
        raise ConfigError(f"{os.fspath(p)}: the {split} list is empty")
    absent = [s for s, _ in samples if not (root / s).is_file()]
    if absent:
        raise ConfigError(
            f"{len(absent)} image(s) of {os.fspath(p)!r} are not under {os.fspath(root)!r}, e.g. {absent[0]!r}; "
            "set images=<the dataset's image folder>"
        )
    classnames = [names[k] for k in range(n)]
    return ClassificationData(root, classnames, classnames, samples, f"CoOp split {p.name} ({split})")
