"""Caption metrics: pycocoevalcap numbers, METEOR without Java, CLIPScore / RefCLIPScore by hand."""

from __future__ import annotations

import pytest
import torch
from _caption import right_reward, squares

from vlmrm.caption import metrics
from vlmrm.caption.metrics import clip_scores, coco_metrics


def test_identical_captions_score_full_marks_and_others_less():
    refs = {1: ["a red square on grey", "a red box"], 2: ["a blue square on grey", "a blue box"]}
    perfect = coco_metrics(
        {1: "a red square on grey", 2: "a blue square on grey"}, refs, meteor=False
    )
    assert perfect["BLEU-1"] == pytest.approx(100.0, abs=1e-3)
    assert perfect["ROUGE-L"] == pytest.approx(100.0, abs=1e-3)
    worse = coco_metrics({1: "a green circle", 2: "trees"}, refs, meteor=False)
    assert worse["BLEU-1"] < perfect["BLEU-1"] and worse["CIDEr"] < perfect["CIDEr"]
    assert "METEOR" not in perfect


def test_bleu1_matches_a_hand_count():
    # Candidate "a red cat" vs reference "a red square": 2 of 3 unigrams match, brevity 1.
    out = coco_metrics({1: "a red cat"}, {1: ["a red square"]}, meteor=False)
    assert out["BLEU-1"] == pytest.approx(100 * 2 / 3, abs=0.01)


def test_meteor_is_skipped_with_one_line_without_java(monkeypatch, capsys):
    monkeypatch.setattr(metrics, "has_java", lambda: False)
    out = coco_metrics({1: "A red square."}, {1: ["a red square"]})
    assert "METEOR" not in out and out["BLEU-1"] == pytest.approx(
        100.0, abs=1e-3
    )  # Python tokenizer
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "METEOR skipped" in err[0] and "Java" in err[0]


@pytest.mark.skipif(not metrics.has_java(), reason="METEOR needs Java")
def test_meteor_with_java():
    """METEOR 1.5 by hand: "a red squares" against its best reference "a red square" (the
    other reference shares only "a"). METEOR's English parameters weigh content words
    δ = 0.75 and function words 1 − δ = 0.25, a stem match ("squares"/"square") 0.6 of an
    exact one; one chunk in order costs no fragmentation penalty, and precision equals
    recall here, so the score is their weighted match ratio."""
    out = coco_metrics({1: "a red squares"}, {1: ["a blue circle", "a red square"]})
    function, content, stem = 0.25, 0.75, 0.6
    matched = function * 1.0 + content * 1.0 + content * stem  # a, red, squares~square
    assert out["METEOR"] == pytest.approx(100.0 * matched / (function + 2 * content), abs=1e-6)


def test_clipscore_and_refclipscore_by_hand():
    clip = right_reward()
    images = squares(2)
    emb = clip.embed_images(images)
    caps, refs = ["red thing", "blue thing"], [["a red square", "red"], ["a blue square"]]
    cs, ref = clip_scores(clip, emb, caps, refs)
    for i in range(2):
        t = clip.embed_texts([f"A photo depicts {caps[i]}"])[0]
        expect = 2.5 * max(float(emb[i] @ t), 0.0)
        assert float(cs[i]) == pytest.approx(expect, abs=1e-5)
        r = clip.embed_texts([f"A photo depicts {x}" for x in refs[i]])
        rmax = max(float((r @ t).max()), 0.0)
        h = 2 * expect * rmax / (expect + rmax) if expect + rmax > 0 else 0.0
        assert float(ref[i]) == pytest.approx(h, abs=1e-5)
    assert torch.all(cs >= 0)
