"""vlmrm.datasets: every caption annotation format read into the same records, the one image
resolver, the commands reading one file alike, and the old module paths that moved."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmrm.datasets.annotations import read_annotations, select_split
from vlmrm.datasets.images import find_images
from vlmrm.errors import ConfigError

# One small dataset, written by hand in every format below: image → captions, in file order.
EXPECTED = {
    "img/a.png": ("a red square", "the square is red"),
    "img/b.png": ("a blue bar",),
    "img/c.png": ("a green cross", "green, a cross", "a cross"),
}


def _write_images(root: Path) -> None:
    for i, rel in enumerate(EXPECTED):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / rel)


def _coco(root: Path) -> Path:
    images = [{"id": 10 + i, "file_name": rel} for i, rel in enumerate(EXPECTED)]
    # annotations interleaved across images: the records keep each image's caption order
    anns = [
        {"id": 1, "image_id": 10, "caption": "a red square"},
        {"id": 2, "image_id": 12, "caption": "a green cross"},
        {"id": 3, "image_id": 11, "caption": "a blue bar"},
        {"id": 4, "image_id": 10, "caption": " the square is red "},
        {"id": 5, "image_id": 12, "caption": "green, a cross"},
        {"id": 6, "image_id": 12, "caption": "a cross"},
    ]
    path = root / "captions_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path


def _karpathy(root: Path) -> Path:
    doc = {"images": [
        {"filepath": "img", "filename": "a.png", "split": "test", "cocoid": 10,
         "sentences": [{"raw": "a red square"}, {"raw": "the square is red"}]},
        {"filepath": "img", "filename": "b.png", "split": "restval", "cocoid": 11,
         "sentences": ["a blue bar"]},
        {"filepath": "img", "filename": "c.png", "split": "train", "cocoid": 12,
         "sentences": [{"raw": "a green cross"}, {"raw": "green, a cross"}, {"raw": "a cross"}]},
    ]}  # fmt: skip
    path = root / "dataset_shapes.json"
    path.write_text(json.dumps(doc))
    return path


def _lavis(root: Path) -> Path:
    rows = [
        {"image": "img/a.png", "caption": ["a red square", "the square is red"]},
        {"image": "img/b.png", "caption": "a blue bar"},
        {"image": "img/c.png", "caption": ["a green cross"]},
        {"image": "img/c.png", "caption": ["green, a cross", "a cross"]},
    ]
    path = root / "test.json"
    path.write_text(json.dumps(rows))
    return path


def _jsonl(root: Path) -> Path:
    rows = [("img/a.png", "a red square"), ("img/c.png", "a green cross"), ("img/b.png", "a blue bar"),
            ("img/a.png", "the square is red"), ("img/c.png", "green, a cross"), ("img/c.png", "a cross")]  # fmt: skip
    path = root / "captions.jsonl"
    path.write_text("".join(json.dumps({"image": i, "caption": c}) + "\n" for i, c in rows))
    return path


def _csv(root: Path) -> Path:
    path = root / "captions.csv"
    path.write_text(
        "image,caption\n"
        "img/a.png,a red square\n"
        "img/a.png,the square is red\n"
        "img/b.png,a blue bar\n"
        'img/c.png,"a green cross"\n'
        'img/c.png,"green, a cross"\n'
        "img/c.png,a cross\n"
    )
    return path


WRITERS = {"coco": _coco, "karpathy": _karpathy, "lavis": _lavis, "jsonl": _jsonl, "csv": _csv}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_reads_to_the_same_records(fmt: str, tmp_path: Path) -> None:
    ann = read_annotations(WRITERS[fmt](tmp_path))
    assert ann.format == fmt
    got = {r.image: r.captions for r in ann.records}
    assert got == EXPECTED
    # the row formats group by image in order of first appearance; JSON formats keep file order
    order = ["img/a.png", "img/c.png", "img/b.png"] if fmt == "jsonl" else list(EXPECTED)
    assert [r.image for r in ann.records] == order


def test_ids_and_splits_are_the_files_own(tmp_path: Path) -> None:
    coco = read_annotations(_coco(tmp_path)).records
    assert [(r.image_id, r.split) for r in coco] == [(10, None), (11, None), (12, None)]
    karpathy = read_annotations(_karpathy(tmp_path)).records
    assert [(r.image_id, r.split) for r in karpathy] == [
        (10, "test"),
        (11, "restval"),
        (12, "train"),
    ]
    assert [r.image_id for r in read_annotations(_lavis(tmp_path)).records] == ["a", "b", "c"]
    path = tmp_path / "k.json"
    assert [r.image for r in select_split(karpathy, "train", path)] == ["img/b.png", "img/c.png"]
    assert [r.image for r in select_split(karpathy, "test", path)] == ["img/a.png"]
    assert len(select_split(karpathy, "all", path)) == 3
    with pytest.raises(
        ConfigError,
        match=r"no images in split 'val'; its splits are \['restval', 'test', 'train'\]",
    ):
        select_split(karpathy, "val", path)
    # a one-split file is returned whole whatever split= asks
    assert select_split(coco, "val", path) == coco


def test_rows_kept_in_file_order_when_asked(tmp_path: Path) -> None:
    records = read_annotations(_jsonl(tmp_path), group_rows=False).records
    assert [(r.image, r.captions) for r in records][:3] == [
        ("img/a.png", ("a red square",)), ("img/c.png", ("a green cross",)), ("img/b.png", ("a blue bar",)),
    ]  # fmt: skip
    assert len(records) == 6


def test_hugging_face_rows_are_records_with_written_images(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    _write_images(tmp_path)
    pixels = [np.asarray(Image.open(tmp_path / rel)) for rel in EXPECTED]
    ds = datasets.Dataset.from_dict({
        "image": [Image.open(tmp_path / rel) for rel in EXPECTED],
        "text": [list(caps) for caps in EXPECTED.values()],
    }).cast_column("image", datasets.Image())  # fmt: skip
    ds.to_parquet(tmp_path / "d.parquet")
    from vlmrm.datasets.hf import read_hf

    records = read_hf(tmp_path / "d.parquet", "image", "text", tmp_path / "cache")
    assert [r.captions for r in records] == list(EXPECTED.values())
    for record, want in zip(records, pixels, strict=True):
        assert np.array_equal(np.asarray(Image.open(record.image).convert("RGB")), want)


def test_bad_files_are_one_line_naming_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    cases = [
        ({"foo": 1}, "neither COCO captions JSON"),
        ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": 2, "caption": "c"}]},
         r"annotations\[0\] names image_id 2, which 'images' lacks"),
        ({"images": [{"id": 1, "file_name": "a.png"}], "annotations": []}, "has no caption annotation"),
        ({"images": [{"filename": "a.png", "sentences": [""]}]}, "non-empty string"),
        ([{"image": "a.png"}], r"x\.json: \[0\] needs 'image' and 'caption' keys"),
        ([], "lists no images"),
    ]  # fmt: skip
    for raw, match in cases:
        bad.write_text(json.dumps(raw))
        with pytest.raises(ConfigError, match=match) as err:
            read_annotations(bad)
        assert "\n" not in str(err.value)
    (tmp_path / "y.jsonl").write_text('{"image": "a.png", "caption": "c"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"y\.jsonl:2: not a JSON object"):
        read_annotations(tmp_path / "y.jsonl")
    (tmp_path / "z.csv").write_text("file,text\na.png,c\n")
    with pytest.raises(ConfigError, match="no 'image' column"):
        read_annotations(tmp_path / "z.csv")
    with pytest.raises(ConfigError, match="is missing; give"):
        read_annotations(tmp_path / "nothing.json")


def test_image_resolver_finds_flattened_karpathy_images_and_names_a_missing_one(
    tmp_path: Path,
) -> None:
    ann = _karpathy(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(flat / name)
    rels = ["img/a.png", "img/b.png"]
    assert find_images(rels, flat, ann) == [flat / "a.png", flat / "b.png"]
    with pytest.raises(ConfigError) as err:
        find_images([*rels, "img/c.png"], flat, ann)
    msg = str(err.value)
    assert msg.startswith("1 of 3 images listed in dataset_shapes.json are missing under")
    assert repr(str(flat / "img" / "c.png")) in msg and msg.endswith(
        "set images=<folder with the images>"
    )
    with pytest.raises(
        ConfigError, match="image folder .* does not exist; set image_root=<folder>"
    ):
        find_images(rels, tmp_path / "nowhere", ann, setting="image_root")


@pytest.mark.parametrize("fmt", ["coco", "karpathy", "lavis"])
def test_tune_caption_and_tta_read_one_file_to_the_same_images_and_captions(
    fmt: str, tmp_path: Path
) -> None:
    from vlmrm.caption.data import load_captions
    from vlmrm.tta.retrieval.data import load_retrieval
    from vlmrm.tune.data.captions import load_caption_data
    from vlmrm.tune.data.images import load_image_captions

    _write_images(tmp_path)
    ann = WRITERS[fmt](tmp_path)
    want = {str(tmp_path / rel): caps for rel, caps in EXPECTED.items()}

    tune = {d.image: d.captions for d in load_caption_data(ann)}
    cap = load_captions(ann, split="all")
    caption = {str(p): tuple(refs) for p, refs in zip(cap.image_paths, cap.references, strict=True)}
    ret = load_retrieval(ann, split="all")
    tta = {
        str(p): tuple(ret.captions[j] for j in ret.img2txt[i])
        for i, p in enumerate(ret.image_paths)
    }
    rows: dict[str, tuple[str, ...]] = {}
    for image, c in load_image_captions(ann):
        rows[image] = (*rows.get(image, ()), c)
    assert tune == caption == tta == rows == want


def _old_module(path: str):
    """``path`` imported afresh: the import warns that the module moved."""
    import importlib

    sys.modules.pop(path, None)
    with pytest.warns(DeprecationWarning, match=rf"module {path} moved to "):
        return importlib.import_module(path)


def test_moved_names_warn_with_their_new_path_and_still_work() -> None:
    from vlmrm.datasets import coop, imagenet
    from vlmrm.datasets.classes import load_class_folders
    from vlmrm.tta.settings import FINEGRAINED_PRESET

    old = {m: _old_module(f"vlmrm.tta.{m}") for m in ("coop", "data", "imagenet")}
    # names of the module the old path became read through it, without another warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert old["coop"].load_coop_split is coop.load_coop_split
        assert old["imagenet"].imagenet_classnames is imagenet.imagenet_classnames
    assert old["imagenet"].imagenet_classnames()[:2] == ["tench", "goldfish"]
    # names that went elsewhere warn with their own new home
    cases = [
        (old["coop"], "FINEGRAINED_PRESET", FINEGRAINED_PRESET, "vlmrm.tta.settings"),
        (old["data"], "load_class_folders", load_class_folders, "vlmrm.datasets.classes"),
    ]
    for module, name, new, home in cases:
        with pytest.warns(
            DeprecationWarning, match=rf"{module.__name__}\.{name} moved to {home}\.{name}"
        ):
            assert getattr(module, name) is new
    with pytest.raises(AttributeError):
        old["coop"].no_such_name  # noqa: B018
