"""Tiny CoOp dataset trees in the layouts the datasets' own archives unpack to.

Each builder writes ``<data>/<dataset folder>/...`` with drawn images (one colour per class,
see ``_captions.draw``) at the paths the real archive uses, plus CoOp's split file
(``split_zhou_<Dataset>.json``: ``train``/``val``/``test`` lists of ``[path relative to the
image folder, label, class name]``) or, for FGVCAircraft and ImageNet, the lists CoOp reads.
:data:`TREES` maps the dataset folder (as the commands of docs/tta.md name it under
``/data/``) to its builder, which returns the test list as ``(path relative to the image folder, label,
class name)``.

Imported as ``from _coop import ...`` (``tests/`` is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
from _captions import COLOURS, draw

_COLOURS = list(COLOURS)


def _image(path: Path, label: int, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    place = ("left", "right", "top", "bottom")[i % 4]
    iio.imwrite(path, draw(_COLOURS[label % len(_COLOURS)], "square", place), extension=".jpg")


def _split_file(folder: Path, images: Path, file: str, rows: dict[str, list[tuple[str, int, str]]]):
    """Draw every image of ``rows`` under ``images`` and write CoOp's split file in ``folder``."""
    for part in rows.values():
        for i, (rel, label, _) in enumerate(part):
            _image(images / rel, label, i)
    (folder / file).write_text(json.dumps({k: [list(r) for r in v] for k, v in rows.items()}))
    return [(rel, label, name.replace("_", " ")) for rel, label, name in rows["test"]]


def _split(train, val, test):
    return {"train": train, "val": val, "test": test}


def dtd(data: Path):
    """``dtd-r1.0.1.tar.gz`` unpacks to ``dtd/{images/<texture>/, imdb/, labels/}``."""
    root = data / "dtd"
    for d in ("imdb", "labels"):
        (root / d).mkdir(parents=True)
    (root / "labels" / "test1.txt").write_text("banded/banded_0004.jpg\n")
    return _split_file(root, root / "images", "split_zhou_DescribableTextures.json", _split(
        [("banded/banded_0002.jpg", 0, "banded"), ("zigzagged/zigzagged_0012.jpg", 1, "zigzagged")],
        [("banded/banded_0003.jpg", 0, "banded")],
        [("banded/banded_0004.jpg", 0, "banded"), ("zigzagged/zigzagged_0020.jpg", 1, "zigzagged")]))


def oxford_flowers(data: Path):
    """``102flowers.tgz`` unpacks to ``jpg/image_NNNNN.jpg``; labels in ``imagelabels.mat``."""
    root = data / "oxford_flowers"
    root.mkdir(parents=True)
    (root / "cat_to_name.json").write_text(json.dumps({"1": "pink primrose", "2": "globe thistle"}))
    return _split_file(root, root / "jpg", "split_zhou_OxfordFlowers.json", _split(
        [("image_06734.jpg", 0, "pink primrose"), ("image_06609.jpg", 1, "globe thistle")], [],
        [("image_06743.jpg", 0, "pink primrose"), ("image_06612.jpg", 1, "globe thistle")]))


def oxford_pets(data: Path):
    """``images.tar.gz`` unpacks to ``images/<Breed>_<n>.jpg``, ``annotations.tar.gz`` beside it."""
    root = data / "oxford_pets"
    (root / "annotations").mkdir(parents=True)
    return _split_file(root, root / "images", "split_zhou_OxfordPets.json", _split(
        [("Abyssinian_1.jpg", 0, "abyssinian")], [("great_pyrenees_3.jpg", 1, "great_pyrenees")],
        [("Abyssinian_10.jpg", 0, "abyssinian"), ("great_pyrenees_12.jpg", 1, "great_pyrenees")]))


def food101(data: Path):
    """``food-101.tar.gz`` unpacks to ``food-101/{images/<dish>/<id>.jpg, meta/}``."""
    root = data / "food-101"
    (root / "meta").mkdir(parents=True)
    return _split_file(root, root / "images", "split_zhou_Food101.json", _split(
        [("apple_pie/1005649.jpg", 0, "apple_pie"), ("baby_back_ribs/1005293.jpg", 1, "baby_back_ribs")], [],
        [("apple_pie/101251.jpg", 0, "apple_pie"), ("baby_back_ribs/1010143.jpg", 1, "baby_back_ribs")]))


def stanford_cars(data: Path):
    """``cars_train.tgz``/``cars_test.tgz`` unpack to ``cars_train/``/``cars_test/`` beside ``devkit/``;
    the split file's paths start with those folders."""
    root = data / "stanford_cars"
    (root / "devkit").mkdir(parents=True)
    return _split_file(root, root, "split_zhou_StanfordCars.json", _split(
        [("cars_train/00001.jpg", 0, "2012 Audi TTS Coupe"), ("cars_train/00002.jpg", 1, "2012 Acura TL Sedan")],
        [], [("cars_test/00001.jpg", 0, "2012 Audi TTS Coupe"), ("cars_test/00003.jpg", 1, "2012 Acura TL Sedan")]))


def sun397(data: Path):
    """``SUN397.tar.gz`` unpacks to ``SUN397/<letter>/<scene>[/<kind>]/sun_<id>.jpg``."""
    root = data / "sun397"
    root.mkdir(parents=True)
    (root / "ClassName.txt").write_text("/a/abbey\n/a/apartment_building/outdoor\n")
    return _split_file(root, root / "SUN397", "split_zhou_SUN397.json", _split(
        [("a/abbey/sun_aaalbzqrimafwbiv.jpg", 0, "abbey")],
        [("a/apartment_building/outdoor/sun_aaabbcdsmcbkljdt.jpg", 1, "outdoor apartment building")],
        [("a/abbey/sun_aacphuqehdodwawg.jpg", 0, "abbey"),
         ("a/apartment_building/outdoor/sun_abexrnnfgqxmnjad.jpg", 1, "outdoor apartment building")]))


def caltech101(data: Path):
    """``101_ObjectCategories.tar.gz`` unpacks to ``101_ObjectCategories/<category>/image_NNNN.jpg``."""
    root = data / "caltech-101"
    root.mkdir(parents=True)
    return _split_file(root, root / "101_ObjectCategories", "split_zhou_Caltech101.json", _split(
        [("Faces_easy/image_0001.jpg", 0, "face"), ("accordion/image_0001.jpg", 1, "accordion")], [],
        [("Faces_easy/image_0017.jpg", 0, "face"), ("accordion/image_0042.jpg", 1, "accordion")]))


def ucf101(data: Path):
    """``UCF-101-midframes.zip`` unpacks to ``UCF-101-midframes/<Action>/v_<Action>_gNN_cNN.jpg``."""
    root = data / "ucf101"
    root.mkdir(parents=True)
    return _split_file(root, root / "UCF-101-midframes", "split_zhou_UCF101.json", _split(
        [("Apply_Eye_Makeup/v_ApplyEyeMakeup_g08_c01.jpg", 0, "Apply_Eye_Makeup")], [],
        [("Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg", 0, "Apply_Eye_Makeup"),
         ("Archery/v_Archery_g01_c02.jpg", 1, "Archery")]))


def eurosat(data: Path):
    """``EuroSAT.zip`` unpacks to ``2750/<Class>/<Class>_<n>.jpg``."""
    root = data / "eurosat"
    root.mkdir(parents=True)
    return _split_file(root, root / "2750", "split_zhou_EuroSAT.json", _split(
        [("AnnualCrop/AnnualCrop_1.jpg", 0, "Annual Crop Land"), ("Forest/Forest_1.jpg", 1, "Forest")], [],
        [("AnnualCrop/AnnualCrop_2.jpg", 0, "Annual Crop Land"), ("Forest/Forest_7.jpg", 1, "Forest")]))


def fgvc_aircraft(data: Path):
    """``fgvc-aircraft-2013b.tar.gz`` unpacks to ``fgvc-aircraft-2013b/data/`` with ``images/<id>.jpg``,
    ``variants.txt`` and ``images_variant_{train,val,test}.txt`` (``<id> <variant>`` lines)."""
    root = data / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "BAE 146-200", "F/A-18"]
    lists = {"train": [("1025794", 0), ("0062765", 1)], "val": [("1102429", 2)],
             "test": [("1514522", 0), ("0957403", 1), ("2233408", 2)]}  # fmt: skip
    for split, rows in lists.items():
        for i, (image, label) in enumerate(rows):
            _image(root / "images" / f"{image}.jpg", label, i)
        (root / f"images_variant_{split}.txt").write_text("".join(f"{n} {variants[c]}\n" for n, c in rows))
        (root / f"images_family_{split}.txt").write_text("".join(f"{n} Boeing\n" for n, _ in rows))
    (root / "variants.txt").write_text("\n".join(variants) + "\n")
    (root / "families.txt").write_text("Boeing\n")
    return [(f"{n}.jpg", c, variants[c]) for n, c in lists["test"]]


def imagenet(data: Path):
    """CoOp's ImageNet: ``imagenet/images/{train,val}/<wnid>/`` and ``classnames.txt``."""
    root = data / "imagenet"
    names = {"n01440764": "tench", "n01443537": "goldfish"}
    test = [("n01440764/ILSVRC2012_val_00000293.JPEG", 0, "tench"),
            ("n01443537/ILSVRC2012_val_00000236.JPEG", 1, "goldfish")]
    for i, (rel, label, _) in enumerate(test):
        _image(root / "images" / "val" / rel, label, i)
    for label, wnid in enumerate(names):
        _image(root / "images" / "train" / wnid / f"{wnid}_10026.JPEG", label, 0)
    (root / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in names.items()))
    return test


TREES: dict[str, Callable[[Path], list[tuple[str, int, str]]]] = {
    "dtd": dtd, "oxford_flowers": oxford_flowers, "oxford_pets": oxford_pets,
    "fgvc-aircraft-2013b": fgvc_aircraft, "food-101": food101, "stanford_cars": stanford_cars,
    "sun397": sun397, "caltech-101": caltech101, "ucf101": ucf101, "eurosat": eurosat,
    "imagenet": imagenet,
}  # fmt: skip
