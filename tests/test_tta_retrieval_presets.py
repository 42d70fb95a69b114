"""Retrieval as the reference runs it: LAVIS caption normalisation, K = 20 for COCO
image→text, and ``batch_size=`` adapting several queries at once (same results)."""

from __future__ import annotations

import json

import pytest
from _tta import karpathy_split

from vlmrm.cli.args import parse_settings
from vlmrm.tta.cli import main
from vlmrm.tta.retrieval.data import lavis_caption, load_retrieval
from vlmrm.tta.settings import TTASettings


def test_lavis_caption_normalisation():
    assert lavis_caption('A Dog (brown) runs: fast!!  Over   the "hill".') == "a dog brown runs fast over the hill"
    assert lavis_caption(" ".join(["w"] * 60)) == " ".join(["w"] * 50)


def test_retrieval_data_is_normalised_unless_asked_not_to(tmp_path):
    ann, imgs = karpathy_split(tmp_path, [["A Dog.", "The CAT; sleeping!"], ["x"]])
    assert load_retrieval(ann, imgs, caption_norm="lavis").captions == ["a dog", "the cat sleeping", "x"]
    assert load_retrieval(ann, imgs).captions == ["A Dog.", "The CAT; sleeping!", "x"]


def test_coco_image_to_text_uses_k_20():
    coco = parse_settings(TTASettings, ["task=retrieve", "data=/d/dataset_coco.json"]).method_settings()
    flickr = parse_settings(TTASettings, ["task=retrieve", "data=/d/dataset_flickr30k.json"]).method_settings()
    t2i = parse_settings(TTASettings, ["task=retrieve", "data=/d/dataset_coco.json", "direction=t2i"])
    assert (coco.k, flickr.k, t2i.method_settings().k) == (20, 16, 12)
    assert parse_settings(TTASettings, ["task=retrieve", "data=/d/coco.json", "k=5"]).method_settings().k == 5


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_batched_retrieval_gives_the_one_at_a_time_results(tmp_path, direction):
    ann, imgs = karpathy_split(tmp_path, [[f"photo {i} of a dog", f"thing {i}"] for i in range(5)], size=(32, 48))
    common = [f"data={ann}", f"images={imgs}", "model=vlmrm-tiny", "reward_model=vlmrm-tiny", "progress=false",
              "k=3", "steps=2", "lr=1e-3", f"direction={direction}"]  # fmt: skip
    one, many = tmp_path / "one", tmp_path / "many"
    assert main(["task=retrieve", f"out={one}", *common]) == 0
    assert main(["task=retrieve", f"out={many}", "batch_size=3", *common]) == 0
    a = [json.loads(x) for x in (one / "results.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (many / "results.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == (5 if direction == "i2t" else 10)
    for ra, rb in zip(a, b, strict=True):
        assert (ra["key"], ra["rank"], ra["zeroshot_rank"]) == (rb["key"], rb["rank"], rb["zeroshot_rank"])
        assert ra["rewards"] == pytest.approx(rb["rewards"], abs=1e-4)
