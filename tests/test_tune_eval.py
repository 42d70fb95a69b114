"""``python -m vlmrm.tune.eval`` and ``python -m vlmrm.tune.vsr_pairs`` on a tiny VSR-style set
(drawn red and blue blocks, several relations, a dev split) and drawn captioned shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _captions import shapes_dataset, vsr_dataset

from vlmrm.tune.data.records import load_ranked_sets
from vlmrm.tune.eval import main as eval_main
from vlmrm.tune.vsr.rows import load_vsr
from vlmrm.tune.vsr_pairs import main as pairs_main


@pytest.fixture(scope="module")
def vsr(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vsr")
    return {"train": vsr_dataset(root, 8, 0), "dev": vsr_dataset(root, 4, 1), "test": vsr_dataset(root, 6, 2)}


def test_vsr_pairs_prefers_the_true_caption_and_balances_edits(vsr, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pairs.jsonl"
    assert pairs_main([f"vsr={vsr['train']}", f"out={out}"]) == 0
    assert "16 pairs from 24 VSR rows" in capsys.readouterr().out  # 8 "with" rows have no opposite
    sets = load_ranked_sets(out)
    rows = [r for r in load_vsr(vsr["train"]) if r.relation != "with"]
    assert len(sets) == len(rows) == 16
    for s, r in zip(sets, rows, strict=True):
        assert s.anchor == r.image
        best = s.candidates[0]
        # the preferred caption is the true one: the row's caption if true, else its swapped twin
        assert (best == r.caption) == r.label and s.modified == ((False, True) if r.label else (True, False))
    assert pairs_main([f"vsr={vsr['train']}", f"out={tmp_path / 'p2.jsonl'}", "false_rows=false"]) == 0
    assert len(load_ranked_sets(tmp_path / "p2.jsonl")) == 8


def _recall_by_hand(clip, data) -> dict[str, float]:
    """Image→text and text→image R@1/R@10 by sorting each row/column of similarities."""
    import numpy as np
    import torch

    from vlmrm.runtime.images import load_image

    img = clip.embed_images(np.stack([load_image(d.image) for d in data])).double()
    captions = [(i, c) for i, d in enumerate(data) for c in d.captions]
    sim = img @ clip.embed_texts([c for _, c in captions]).double().T
    owner = torch.tensor([i for i, _ in captions])
    out = {}
    for k in (1, 10):
        top_captions = sim.topk(k, dim=1).indices  # (images, k)
        out[f"i2t_R@{k}"] = float(np.mean([(owner[top_captions[i]] == i).any() for i in range(len(data))]))
        top_images = sim.topk(k, dim=0).indices  # (k, captions)
        out[f"t2i_R@{k}"] = float(np.mean([(top_images[:, j] == owner[j]).any() for j in range(len(captions))]))
    return out


def test_eval_reports_vsr_with_dev_threshold_preferences_and_retrieval_beside_the_base(
    vsr, tmp_path: Path, capsys, saved_tuned_tiny
) -> None:
    import vlmrm
    from vlmrm.tune.data.captions import load_caption_data

    pairs = tmp_path / "pairs.jsonl"
    pairs_main([f"vsr={vsr['test']}", f"out={pairs}"])
    shapes = shapes_dataset(tmp_path / "shapes")
    tuned, tuned_file = saved_tuned_tiny(0.05)  # stands in for a tuned model: other weights
    out = tmp_path / "eval"
    argv = ["model=vlmrm-tiny", f"pretrained={tuned_file}", "base=vlmrm-tiny", "device=cpu",
            f"vsr={vsr['test']}", f"vsr_dev={vsr['dev']}", f"pref={pairs}", f"captions={shapes}",
            f"out={out}"]  # fmt: skip
    assert eval_main(argv) == 0
    text = capsys.readouterr().out
    assert "untuned" in text and "95.4" in text and "projective" in text and "retrieval i2t_R@1" in text
    doc = json.loads((out / "metrics.json").read_text())
    model, base = doc["model"], doc["base"]
    v = model[f"vsr/{vsr['test']}"]
    sw, th = v["swap"], v["threshold"]
    assert sw["n"] == 12 and sw["n_skipped"] == 6 and sw["skipped_relations"] == ["with"]
    assert sum(r["n"] for r in sw["per_relation"].values()) == sw["n"]
    assert sum(r["correct"] for r in sw["per_category"].values()) == round(sw["accuracy"] * sw["n"])
    assert th["threshold_source"] == "fitted on 12 dev rows" and th["n"] == 18
    assert model[f"pref/{pairs}"]["n_pairs"] == 12
    assert model["retrieval"]["n_images"] == 60
    # each column is its own model's retrieval, recomputed here by sorting similarities
    data = load_caption_data(shapes)
    seeded = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    for column, clip in ((model, tuned), (base, seeded)):
        expect = _recall_by_hand(clip, data)
        got = {k: column["retrieval"][k] for k in expect}
        assert got == pytest.approx(expect, abs=1e-9), (got, expect)
    assert model["retrieval"] != base["retrieval"]


def test_eval_settings_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert eval_main(["model=vlmrm-tiny"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert eval_main(["model=vlmrm-tiny", f"vsr={tmp_path / 'none.jsonl'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
