"""Ranked-set JSONL, ranking → pairs, whole-word swaps, the builder and the VSR loader."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from vlmrm.errors import ConfigError
from vlmrm.runtime.images import load_image
from vlmrm.tune import data as D

# One torch thread for this module (see the fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def png(path: Path, color=(200, 30, 30), size=(16, 16)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*size, 3), np.uint8)
    img[...] = color
    iio.imwrite(path, img)
    return path.name


def write(path: Path, rows) -> Path:
    with path.open("w") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture
def imgs(tmp_path: Path) -> Path:
    for i in range(3):
        png(tmp_path / f"{i}.png", color=(80 * i, 10, 10))
    return tmp_path


def test_ranked_sets_pairs_and_text_anchors(imgs: Path) -> None:
    f = write(
        imgs / "d.jsonl",
        [
            {"image": "0.png", "captions": ["a", "b", "c", "d"]},
            "",
            {"image": "1.png", "chosen": "x", "rejected": "y", "weight": 2.0},
            {"caption": "a red thing", "images": ["0.png", "1.png", "2.png"], "ranks": [0, 1, 1]},
        ],
    )
    sets = D.load_ranked_sets(f)
    assert [len(s) for s in sets] == [4, 2, 3]
    assert sets[0].anchor == str(imgs / "0.png") and sets[0].ranks == (0, 1, 2, 3)
    assert sets[1].weight == 2.0 and sets[1].candidates == ("x", "y")
    assert sets[2].anchor_kind == "text" and sets[2].item(1) == (str(imgs / "1.png"), "a red thing")
    # round trip through the writer keeps everything
    out = D.write_ranked_sets(imgs / "sub" / "copy.jsonl", sets)
    assert D.load_ranked_sets(out) == sets


def test_ranking_to_pairs_counts(imgs: Path) -> None:
    k5 = D.RankedSet(anchor="i", candidates=tuple("abcde"))
    tied = D.RankedSet(anchor="i", candidates=tuple("abcde"), ranks=(0, 0, 1, 2, 2))
    assert len(D.ranking_to_pairs([k5], "top")) == 4  # K-1
    assert len(D.ranking_to_pairs([k5], "all")) == 10  # K(K-1)/2
    assert len(D.ranking_to_pairs([k5], "adjacent")) == 4
    assert len(D.ranking_to_pairs([tied], "top")) == 2 * 3  # 2 best × 3 worse
    assert len(D.ranking_to_pairs([tied], "all")) == 2 * 3 + 1 * 2  # ties make no pair
    assert len(D.ranking_to_pairs([tied], "adjacent")) == 2 * 1 + 1 * 2
    assert len(D.ranking_to_pairs([k5, tied], "all")) == 18
    pairs = D.ranking_to_pairs([k5], "all", weighting="gap")
    assert sorted(p.weight for p in pairs) == [1, 1, 1, 1, 2, 2, 2, 3, 3, 4]
    top = D.ranking_to_pairs([k5], "top")
    assert all(p.chosen == ("i", "a") for p in top)
    assert [p.rejected[1] for p in top] == list("bcde")


@pytest.mark.parametrize(
    "row, message",
    [
        ("{not json", r"d\.jsonl:2: invalid JSON"),
        ("[1, 2]", r"d\.jsonl:2: expected a JSON object"),
        ({"image": "0.png", "captions": ["only one"]}, r"d\.jsonl:2: 'captions' must be a list of 2"),
        ({"image": "0.png", "images": ["0.png", "1.png"]}, r"d\.jsonl:2: missing 'captions'"),
        ({"image": "0.png", "caption": "x", "captions": ["a", "b"]}, r"d\.jsonl:2: a row needs exactly one anchor"),
        ({"image": "nope.png", "captions": ["a", "b"]}, r"d\.jsonl:2: image file .*nope\.png"),
        ({"image": "0.png", "captions": ["a", "b"], "ranks": [1, 0]}, r"d\.jsonl:2: 'ranks' must be non-decreasing"),
        ({"image": "0.png", "captions": ["a", "b"], "ranks": [0, 0]}, r"d\.jsonl:2: all candidates are tied"),
        ({"image": "0.png", "captions": ["a", "a"]}, r"d\.jsonl:2: candidate 'a' appears twice"),
        ({"image": "0.png", "chosen": "a"}, r"d\.jsonl:2: a preference pair needs both"),
        ({"image": "0.png", "captions": ["a", "b"], "weight": -1}, r"d\.jsonl:2: 'weight'"),
        ({"image": "0.png", "captions": ["a", ""]}, r"d\.jsonl:2: 'captions\[1\]' must be a non-empty string"),
        ({"image": "0.png", "captions": ["a", "b"], "modified": [True]}, r"d\.jsonl:2: 'modified'"),
    ],
)
def test_malformed_jsonl_names_the_line(imgs: Path, row, message: str) -> None:
    f = write(imgs / "d.jsonl", [{"image": "0.png", "captions": ["a", "b"]}, row])
    with pytest.raises(ConfigError, match=message) as err:
        D.load_ranked_sets(f)
    assert "\n" not in str(err.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        D.load_ranked_sets(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="has no records"):
        D.load_ranked_sets(write(tmp_path / "e.jsonl", ["", "  "]))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the cat is left of the dog", "the cat is right of the dog"),
        ("Left of the cleft rock", "Right of the cleft rock"),
        ("a cleft chin, leftover soup, lefty, bereft", "a cleft chin, leftover soup, lefty, bereft"),
        ("left-over and left's", "left-over and left's"),
        ("left and right", "right and left"),  # simultaneous, not sequential
        ("LEFT", "RIGHT"),
        ("a cup on top of the table", "a cup beneath the table"),
        ("the dog is facing away from the car", "the dog is facing the car"),
        ("a bird above a tree, a car in   front of a house", "a bird below a tree, a car behind a house"),
        ("overcast sky over the underpass", "overcast sky under the underpass"),
        ("a bear on the right-hand side", "a bear on the left-hand side"),
    ],
)
def test_relation_swap_is_whole_word(text: str, expected: str) -> None:
    assert D.swap_relations(text) == expected


def test_flip_colour_and_vsr_swaps() -> None:
    assert D.flip_caption("a red cube left of a ball above a box") == "a red cube right of a ball above a box"
    assert D.color_caption("a red cube on a yellow mat, green grass") == "a blue cube on a cyan mat, green grass"
    assert D.color_caption("a red and orange cube") is None  # orange has no known image
    assert D.color_caption("scared bluebird") == "scared bluebird"
    assert D.relation_of("The bed is at the left side of the cat.", "at the left side of") == (
        "The bed is at the right side of the cat."
    )
    assert D.relation_of("The cat is touching the dog.", "touching") is None
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert (D.flip_image(img)[:, 0] == img[:, -1]).all()
    assert (D.color_swap_image(img)[..., 0] == img[..., 2]).all()


def spatial_scene(path: Path, left=(220, 20, 20), right=(20, 20, 220)) -> None:
    img = np.full((32, 32, 3), 128, np.uint8)
    img[8:24, 2:14] = left
    img[8:24, 18:30] = right
    iio.imwrite(path, img)


def test_builder_makes_balanced_hard_negatives(tmp_path: Path) -> None:
    spatial_scene(tmp_path / "s.png")
    png(tmp_path / "g.png", color=(20, 200, 20))
    examples = [
        (str(tmp_path / "s.png"), "a red block left of a blue block"),
        (str(tmp_path / "g.png"), "a green square above nothing"),
        (str(tmp_path / "g.png"), "an orange thing"),  # no swappable words, no retrieval
    ]
    stats = D.BuildStats()
    sets = D.build_ranked_sets(examples, tmp_path / "aug", clip=None, stats=stats)
    ids = [s.id for s in sets]
    assert ids == ["0/orig", "0/flip", "0/color", "1/orig"]
    orig, flip, color, g = sets
    assert orig.candidates == (
        "a red block left of a blue block",
        "a red block right of a blue block",
        "a blue block left of a red block",
    )
    assert orig.ranks == (0, 1, 1) and orig.modified == (False, True, True)
    # the flipped image prefers the *modified* caption over the unmodified one
    assert flip.candidates == ("a red block right of a blue block", "a red block left of a blue block")
    assert flip.modified == (True, False)
    flipped = iio.imread(flip.anchor)
    assert (flipped[16, 20] == (220, 20, 20)).all()  # red is now on the right
    recolored = iio.imread(color.anchor)
    assert (recolored[16, 5] == (20, 20, 220)).all()
    assert color.candidates[0] == "a blue block left of a red block"
    assert g.candidates == ("a green square above nothing", "a green square below nothing")
    assert {s.group for s in sets[:3]} == {"0"}
    assert stats.flip_sets == 1 and stats.color_sets == 1 and stats.relation_negatives == 2
    assert stats.skipped_color == 1
    # written and re-read
    back = D.load_ranked_sets(D.write_ranked_sets(tmp_path / "out" / "ranked.jsonl", sets))
    assert back == sets


def test_builder_retrieval_with_a_clip(tmp_path: Path) -> None:
    import vlmrm

    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    for i in range(3):
        png(tmp_path / f"{i}.png", color=(90 * i, 50, 200 - 60 * i))
    examples = [
        (str(tmp_path / "0.png"), "a photo of a dog"),
        (str(tmp_path / "0.png"), "a dog on grass"),  # same image: never a negative for it
        (str(tmp_path / "1.png"), "a photo of a cat"),
        (str(tmp_path / "2.png"), "a bowl of soup"),
    ]
    sets = D.build_ranked_sets(examples, tmp_path / "aug", clip, threshold=-1.0, max_retrieved=2, augment=())
    assert len(sets) == 4
    for s, (img, cap) in zip(sets, examples, strict=True):
        assert s.anchor == img and s.candidates[0] == cap and len(s) == 3
        assert s.modified == (False, False, False)
        if img.endswith("0.png"):
            assert not {"a photo of a dog", "a dog on grass"} & set(s.candidates[1:])
    none = D.build_ranked_sets(examples, tmp_path / "aug", clip, threshold=1.01, augment=())
    assert none == []
    with pytest.raises(ConfigError, match="augmentation"):
        D.build_ranked_sets(examples, tmp_path / "aug", None, augment=("rotate",))


def test_vsr_loader(tmp_path: Path) -> None:
    png(tmp_path / "images" / "000000085637.jpg.png")
    rows = [
        {"image": "000000085637.jpg.png", "caption": "The bed is left of the cat.", "relation": "left of",
         "label": 1, "subj": "bed", "obj": "cat"},
        {"image": "000000085637.jpg.png", "caption": "The cat is above the bed.", "relation": "above", "label": "false"},
    ]
    f = write(tmp_path / "vsr.jsonl", rows)
    ex = D.load_vsr(f, image_root=tmp_path / "images")
    assert [e.label for e in ex] == [True, False] and ex[0].relation == "left of"
    write(f, [{"image": "000000085637.jpg.png", "caption": "x", "relation": "above"}])
    with pytest.raises(ConfigError, match=r"vsr\.jsonl:1: VSR row is missing \['label'\]"):
        D.load_vsr(f, image_root=tmp_path / "images")
    write(f, [{"image": "000000085637.jpg.png", "caption": "x", "relation": "above", "label": 3}])
    with pytest.raises(ConfigError, match=r"vsr\.jsonl:1: 'label'"):
        D.load_vsr(f, image_root=tmp_path / "images")


def test_split_keeps_groups_together() -> None:
    sets = [D.RankedSet(anchor=f"i{k}", candidates=("a", "b"), group=str(k // 3)) for k in range(30)]
    train, ev = D.split_sets(sets, 0.3, seed=1)
    assert len(train) + len(ev) == 30 and len(ev) == 9
    assert not {s.group for s in train} & {s.group for s in ev}
    assert D.split_sets(sets, 0.3, seed=1) == (train, ev)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio probing plugins
def test_load_image_modes(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "g.png", np.full((5, 6), 7, np.uint8))
    iio.imwrite(tmp_path / "a.png", np.full((5, 6, 4), 9, np.uint8))
    assert load_image(tmp_path / "g.png").shape == (5, 6, 3)
    assert load_image(tmp_path / "a.png").shape == (5, 6, 3)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="cannot read image"):
        load_image(tmp_path / "bad.png")


def test_build_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vlmrm.tune.build import main as build_main

    spatial_scene(tmp_path / "s.png")
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"image": "s.png", "caption": "a red block left of a blue block"}) + "\n")
    out = tmp_path / "built"
    assert build_main([f"captions={tmp_path / 'pairs.jsonl'}", f"out={out}", "model=none"]) == 0
    assert "wrote 3 ranked sets" in capsys.readouterr().out
    sets = D.load_ranked_sets(out / "ranked.jsonl")
    assert [s.id for s in sets] == ["0/orig", "0/flip", "0/color"]
    assert build_main([f"captions={tmp_path / 'pairs.jsonl'}", "model=none"]) == 2
    assert capsys.readouterr().err.strip() == "error: captions=... and out=... are required"
    assert build_main([f"captions={tmp_path / 'pairs.jsonl'}", f"out={out}", "model=none", "augment=spin"]) == 2
    assert "unknown augmentation" in capsys.readouterr().err
