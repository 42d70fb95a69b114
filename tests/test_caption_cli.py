"""``python -m vlmrm.tta task=caption``: help, settings, an end-to-end run, resume, data errors."""

from __future__ import annotations

import json

import pytest
import torch
from _caption import BLIP_WORDS, caption_set, save_tiny_blip, save_tiny_lm, tiny_captioner

import vlmrm
from vlmrm.caption.captioner import load_mapper, save_mapper
from vlmrm.caption.data import load_captions
from vlmrm.cli.args import parse_settings
from vlmrm.errors import ConfigError
from vlmrm.tta.cli import main
from vlmrm.tta.settings import TTASettings


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("captta")
    ann, images = caption_set(root, n=3)
    cap = tiny_captioner()
    mapper = root / "mapper.safetensors"
    save_mapper(cap.mapper, mapper)
    return ann, images, save_tiny_lm(root / "lm"), mapper


def _argv(setup, out, *extra):
    ann, images, lm, mapper = setup
    return ["task=caption", f"data={ann}", f"images={images}", f"lm={lm}", "tokenizer=clip",
            f"captioner={mapper}", "model=vlmrm-tiny", "reward_model=vlmrm-tiny", "metric_model=vlmrm-tiny",
            "device=cpu", "progress=false", "max_tokens=5", "k=3", "steps=2", "final_beams=2",
            "meteor=false", f"out={out}", *extra]  # fmt: skip


def test_help_documents_captioning(capsys):
    assert main(["task=caption", "--help"]) == 0
    text = capsys.readouterr().out
    for key in ("captioner=", "lm=facebook/opt-125m", "decoding=beam", "final_beams=5", "metric_model=",
                "task=caption"):  # fmt: skip
        assert key in text, key


def test_caption_defaults_are_the_reference():
    s = parse_settings(TTASettings, ["task=caption", "data=x.json", "captioner=m.safetensors"])
    m = s.method_settings()
    assert (m.steps, m.lr, m.weight_decay, m.k, m.final_beams, m.top_p) == (
        4,
        2e-6,
        0.0,
        10,
        5,
        0.92,
    )
    classify = parse_settings(TTASettings, ["task=classify", "data=x"]).method_settings()
    assert classify.weight_decay == 5e-4  # unchanged for the other tasks
    with pytest.raises(ConfigError, match="captioner="):
        parse_settings(TTASettings, ["task=caption", "data=x.json"])
    with pytest.raises(ConfigError, match="decoding"):
        parse_settings(
            TTASettings, ["task=caption", "data=x", "captioner=m", "decoding=greedy"]
        ).method_settings()


def test_end_to_end_run_resume_and_outputs(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(setup, out, "limit=2")) == 0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["image_id"] for r in recs] == [100, 101]
    assert all(len(r["rewards"]) == 2 and len(r["samples"]) == 3 for r in recs)
    assert all(r["caption"] == r["caption"].lower() for r in recs)
    metrics = json.loads((out / "metrics.json").read_text())
    for k in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", "clipscore", "refclipscore"):
        assert f"zeroshot_{k}" in metrics and k in metrics, k
    mean_cs = 100 * sum(r["clipscore"] for r in recs) / 2
    assert metrics["clipscore"] == pytest.approx(mean_cs)
    coco = json.loads((out / "captions.json").read_text())
    assert coco == [{"image_id": r["image_id"], "caption": r["caption"]} for r in recs]
    assert "CIDEr" in capsys.readouterr().out
    # Resume: the third image only; batch_size=2 adapts them together.
    assert main(_argv(setup, out, "batch_size=2")) == 0
    again = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert again[:2] == recs and len(again) == 3
    assert json.loads((out / "metrics.json").read_text())["n"] == 3


def test_mapper_round_trip(tmp_path):
    cap = tiny_captioner()
    save_mapper(cap.mapper, tmp_path / "m.safetensors")
    m = load_mapper(tmp_path / "m.safetensors")
    assert m.config == cap.mapper.config
    saved, loaded = cap.mapper.state_dict(), m.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    with pytest.raises(ConfigError, match="vlmrm.caption.train"):
        load_mapper(tmp_path / "none.safetensors")


def test_missing_lm_is_one_line(setup, tmp_path, capsys):
    argv = _argv(setup, tmp_path / "x")
    argv = [a if not a.startswith("lm=") else f"lm={tmp_path / 'nowhere'}" for a in argv]
    assert main(argv) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "language model" in err[0] and "no folder" in err[0]


def test_nocaps_and_karpathy_data(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    nocaps = {"images": [{"id": 7, "file_name": "a.jpg"}],
              "annotations": [{"image_id": 7, "caption": "a dog"}, {"image_id": 7, "caption": "a pet"}]}  # fmt: skip
    f = tmp_path / "nocaps_val.json"
    f.write_text(json.dumps(nocaps))
    d = load_captions(f)
    assert d.image_ids == [7] and d.references == [["a dog", "a pet"]] and "COCO" in d.source
    bad = [
        (
            {"images": [{"id": 7, "file_name": "a.jpg"}], "annotations": [{"caption": "x"}]},
            "image_id",
        ),
        ({"images": [{"id": 8, "file_name": "a.jpg"}], "annotations": []}, "no caption"),
        ({"images": [{"file_name": "a.jpg"}]}, "filename"),
        ({"images": [{"filename": "a.jpg", "sentences": [], "split": "test"}]}, "non-empty"),
        (
            {"images": [{"filename": "a.jpg", "sentences": ["x"], "split": "val"}]},
            "no images in split",
        ),
        ([1, 2], "neither"),
    ]
    for raw, match in bad:
        f.write_text(json.dumps(raw))
        with pytest.raises(ConfigError, match=match):
            load_captions(f)
    f.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_captions(f)
    with pytest.raises(ConfigError, match="missing"):
        load_captions(tmp_path / "nothing.json")


def test_rerank_orders_candidates_by_reward(setup, tmp_path, capsys):
    from vlmrm.caption.rerank import main as rerank_main

    ann, images, lm, mapper = setup
    out = tmp_path / "rr"
    argv = [f"data={ann}", f"images={images}", f"captioner={mapper}", f"lm={lm}", "tokenizer=clip",
            "model=vlmrm-tiny", "reward_model=vlmrm-tiny", "device=cpu", "n=3", "max_tokens=4",
            "meteor=false", f"out={out}"]  # fmt: skip
    assert rerank_main(argv) == 0
    rows = [json.loads(x) for x in (out / "reranked.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    import vlmrm
    from vlmrm.runtime.images import load_image

    reward = vlmrm.CLIPScoreReward(
        vlmrm.load_clip("vlmrm-tiny", device="cpu", resize_mode="center_crop")
    )
    for r in rows:
        rewards = [c["reward"] for c in r["candidates"]]
        assert (
            rewards == sorted(rewards, reverse=True)
            and r["caption"] == r["candidates"][0]["caption"]
        )
        texts = [c["caption"] or "." for c in r["candidates"]]
        expect = reward(load_image(r["image"])[None], texts)[0]
        assert torch.allclose(torch.tensor(rewards), expect, atol=1e-4)
    assert "top beam" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["n"] == 3
    assert rerank_main([f"data={ann}", "n=2"]) == 2  # no captioner


def test_rerank_orders_blip_candidates_by_reward(setup, tmp_path, monkeypatch):
    """hf_model=<a BLIP folder>: the candidates are BLIP's own n beams (generated here
    independently with transformers), ordered by the reward CLIP's score."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from vlmrm.caption.rerank import main as rerank_main
    from vlmrm.runtime.images import load_image

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ann, images, _, _ = setup
    blip = save_tiny_blip(tmp_path / "blip")
    out = tmp_path / "rr"
    argv = [f"data={ann}", f"images={images}", f"hf_model={blip}", "reward_model=vlmrm-tiny",
            "device=cpu", "n=3", "max_tokens=5", "meteor=false", f"out={out}"]  # fmt: skip
    assert rerank_main(argv) == 0
    rows = [json.loads(x) for x in (out / "reranked.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    model = BlipForConditionalGeneration.from_pretrained(blip).eval()
    processor = BlipProcessor.from_pretrained(blip)
    reward = vlmrm.CLIPScoreReward(
        vlmrm.load_clip("vlmrm-tiny", device="cpu", resize_mode="center_crop")
    )
    reordered = 0
    for r in rows:
        image = load_image(r["image"])
        with torch.no_grad():
            ids = model.generate(**processor(images=image, return_tensors="pt"), num_beams=3,
                                 num_return_sequences=3, max_new_tokens=5)  # fmt: skip
        beams = [t.strip().lower() for t in processor.batch_decode(ids, skip_special_tokens=True)]
        got = [c["caption"] for c in r["candidates"]]
        assert sorted(got) == sorted(beams) and r["top_beam"] == beams[0], (got, beams)
        assert len(set(beams)) == 3 and all(w in BLIP_WORDS for b in beams for w in b.split())
        expect = reward(image[None], beams)[0]
        order = sorted(range(3), key=lambda j: -float(expect[j]))
        assert got == [beams[j] for j in order] and r["caption"] == beams[order[0]]
        rewards = torch.tensor([c["reward"] for c in r["candidates"]])
        torch.testing.assert_close(rewards, expect[order], atol=1e-4, rtol=0)
        reordered += order != [0, 1, 2]
    assert reordered >= 1  # the reward, not BLIP's beam order, picked at least one caption
    coco = json.loads((out / "captions.json").read_text())
    assert [c["caption"] for c in coco] == [r["caption"] for r in rows]
