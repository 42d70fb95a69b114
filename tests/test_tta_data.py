"""RLCF data: class folders and class names, ImageNet variants, retrieval annotations, errors."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from vlmrm.datasets.imagenet import generate_imagenet_classes, imagenet_classes
from vlmrm.errors import ConfigError
from vlmrm.tta import (
    imagenet_classnames,
    imagenet_wnid_to_name,
    load_class_folders,
    load_image,
    load_retrieval,
)


def _png(path, h=20, w=24, channels=3, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    iio.imwrite(path, rng.integers(0, 255, size=shape, dtype=np.uint8))


def test_class_folders_with_folder_names(tmp_path):
    for c in ("golden_retriever", "cat"):
        _png(tmp_path / c / "a.png")
        _png(tmp_path / c / "sub" / "b.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_class_folders(tmp_path)
    assert data.classnames == ["cat", "golden retriever"]
    assert len(data) == 4 and data.samples[0] == ("cat/a.png", 0)
    assert data.names_source == "folder names"


def test_classnames_file_in_both_formats(tmp_path):
    for c in ("c0", "c1"):
        _png(tmp_path / c / "x.png")
    (tmp_path / "classnames.txt").write_text("apple\nbanana split\n")
    assert load_class_folders(tmp_path).classnames == ["apple", "banana split"]
    mapping = tmp_path / "names.txt"
    mapping.write_text("c1 sea lion\nc0 tench\nc9 unused extra class\n")
    assert load_class_folders(tmp_path, mapping).classnames == ["tench", "sea lion"]
    (tmp_path / "classnames.txt").write_text("only one\n")
    with pytest.raises(ConfigError, match="1 names but"):
        load_class_folders(tmp_path)


def test_imagenet_wnid_and_v2_layouts(tmp_path):
    table = imagenet_wnid_to_name()
    assert len(table) == 1000 and table["n01440764"] == "tench"
    assert imagenet_classnames()[1] == "goldfish"
    a = tmp_path / "imagenet-a"
    for w in ("n01498041", "n01440764"):  # a subset, as in ImageNet-A/R
        _png(a / w / "x.jpg")
    data = load_class_folders(a)
    assert data.classnames == ["tench", table["n01498041"]]
    v2 = tmp_path / "v2"
    for i in ("10", "2"):
        _png(v2 / i / "x.png")
    assert load_class_folders(v2, "imagenet").classnames == [
        imagenet_classnames()[2],
        imagenet_classnames()[10],
    ]
    with pytest.raises(ConfigError, match="numbers"):
        load_class_folders(v2)


def test_shipped_imagenet_table_matches_its_sources():
    pytest.importorskip("timm")
    assert list(imagenet_classes()) == generate_imagenet_classes()


def test_class_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_class_folders(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no class sub-folders"):
        load_class_folders(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ConfigError, match="no images"):
        load_class_folders(tmp_path)
    f = tmp_path / "file.json"
    f.write_text("{}")
    with pytest.raises(ConfigError, match="is a file"):
        load_class_folders(f)


def test_load_image_normalises_formats(tmp_path):
    _png(tmp_path / "grey.png", channels=1)
    _png(tmp_path / "rgba.png", channels=4)
    for name in ("grey.png", "rgba.png"):
        img = load_image(tmp_path / name)
        assert img.shape == (20, 24, 3) and img.dtype == np.uint8
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="cannot read image"):
        load_image(tmp_path / "broken.png")


def test_karpathy_and_lavis_annotations(tmp_path):
    _png(tmp_path / "val2014" / "a.jpg")
    _png(tmp_path / "b.jpg")
    karpathy = {
        "images": [
            {
                "filepath": "val2014",
                "filename": "a.jpg",
                "split": "test",
                "sentences": [{"raw": "one"}, {"raw": "two"}],
            },
            {"filename": "b.jpg", "split": "test", "sentences": [{"raw": "three"}]},
            {"filename": "c.jpg", "split": "train", "sentences": [{"raw": "unused"}]},
        ]
    }
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    d = load_retrieval(tmp_path / "k.json")
    assert (
        d.captions == ["one", "two", "three"]
        and d.img2txt == [[0, 1], [2]]
        and d.txt2img == [0, 0, 1]
    )
    lavis = [
        {"image": "val2014/a.jpg", "caption": ["one", "two"]},
        {"image": "b.jpg", "caption": "three"},
    ]
    (tmp_path / "l.json").write_text(json.dumps(lavis))
    d2 = load_retrieval(tmp_path / "l.json", images=tmp_path)
    assert d2.captions == d.captions and d2.img2txt == d.img2txt


def test_retrieval_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        load_retrieval(tmp_path / "none.json")
    with pytest.raises(ConfigError, match="folder"):
        load_retrieval(tmp_path)


@pytest.mark.parametrize(
    "text, error",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"images": [{"filename": "a.jpg"}]}), "'sentences'"),
        (
            json.dumps({"images": [{"filename": "a.jpg", "split": "val", "sentences": [{"raw": "x"}]}]}),
            "no images in split 'test'",
        ),
        (json.dumps([{"image": "a.jpg", "caption": ["x"]}]), "1 of 1 images"),
        (json.dumps({"annotations": []}), "neither"),
    ],
    ids=["json", "sentences", "split", "images", "format"],
)
def test_bad_retrieval_annotations(tmp_path, text, error):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_retrieval(bad)
