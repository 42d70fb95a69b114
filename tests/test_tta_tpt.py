"""The TPT baseline: marginal-entropy minimisation over the confident views, run beside RLCF
by one command (``baseline=tpt``) and reported as zero-shot / TPT / RLCF."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _tta import TINY, make_class_folders

import vlmrm
from vlmrm.cli.args import parse_settings
from vlmrm.errors import ConfigError
from vlmrm.runtime.images import load_image
from vlmrm.tta import ClassificationTTA, CLIPFeedback
from vlmrm.tta.cli import main
from vlmrm.tta.core.rlcf import marginal_entropy, seed_for
from vlmrm.tta.settings import TTASettings


def test_marginal_entropy_is_the_entropy_of_the_averaged_prediction():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    p = logits.softmax(-1).mean(0)
    expected = -float((p * p.log()).sum())
    assert float(marginal_entropy(logits)) == pytest.approx(expected, rel=1e-6)
    # two views sure of different answers: the marginal is uncertain even though each view is not
    sure = torch.tensor([[30.0, 0.0], [0.0, 30.0]])
    assert float(marginal_entropy(sure)) == pytest.approx(math.log(2), rel=1e-4)
    assert marginal_entropy(torch.zeros(4, 2, 5)).shape == (4,)


def test_zero_shot_tpt_and_rlcf_from_one_command(tmp_path, capsys):
    data = make_class_folders(tmp_path / "cls", per_class=2)
    out = tmp_path / "out"
    argv = ["task=classify", f"data={data}", f"out={out}", "baseline=tpt", "tpt_steps=2", "tpt_lr=0.05", *TINY]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "TPT" in text and "RLCF" in text and "zero-shot" in text
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and all({"tpt_pred", "tpt_correct", "tpt_top5", "pred", "zeroshot_pred"} <= set(r) for r in recs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tpt_top1"] == pytest.approx(100 * sum(r["tpt_correct"] for r in recs) / 6)
    assert metrics["top1"] == pytest.approx(100 * sum(r["correct"] for r in recs) / 6)
    # the recorded TPT prediction is what the library's TPT adapter gives for the same views
    cfg = parse_settings(TTASettings, argv)
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", resize_mode="center_crop")
    names = ["cat", "dog", "golden_retriever"]
    tpt = ClassificationTTA(clip, CLIPFeedback([clip]), names, cfg.baseline_settings())
    first = recs[0]
    res = tpt.adapt(load_image(str(data / first["key"])), seed=seed_for(0, first["index"]))
    assert res.pred == first["tpt_pred"] and res.rewards == []
    assert not torch.allclose(res.logits, res.zeroshot_logits)  # it adapted


def test_baseline_settings_errors_are_one_line():
    with pytest.raises(ConfigError, match="baseline"):
        parse_settings(TTASettings, ["task=classify", "data=x", "baseline=ttt"])
    with pytest.raises(ConfigError, match="task=classify"):
        parse_settings(TTASettings, ["task=retrieve", "data=x.json", "baseline=tpt"])
