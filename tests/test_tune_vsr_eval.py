"""VSR evaluated right: every relation with an opposite is swapped, the threshold is fitted
on the dev split, accuracy is broken down by relation and meta-category; ``margin=cosine``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlmrm.tune.data.records import PreferencePair, VSRExample
from vlmrm.tune.eval.metrics import vsr_accuracy
from vlmrm.tune.objectives import losses as L
from vlmrm.tune.objectives.objective import Objective
from vlmrm.tune.settings import TuneConfig
from vlmrm.tune.vsr.relations import META_CATEGORIES, VSR_OPPOSITES, meta_category, swap_caption


class ScoreClip:
    """A stand-in CLIP whose cosine of any image with caption ``c`` is ``table[c]``."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table

    def embed_images(self, frames):
        return torch.tensor([[1.0, 0.0]] * len(frames))

    def embed_texts(self, texts):
        return torch.tensor([[self.table[t], math.sqrt(1 - self.table[t] ** 2)] for t in texts])


def blank(path):
    return np.zeros((2, 2, 3), dtype=np.uint8)


def test_every_vsr_relation_has_a_category_and_most_have_an_opposite():
    assert len(VSR_OPPOSITES) >= 60
    assert sorted(VSR_OPPOSITES) == sorted(r for rels in META_CATEGORIES.values() for r in rels)
    assert sum(v is None for v in VSR_OPPOSITES.values()) == 5
    # the relations the old word table skipped are covered now
    for rel in ("on", "in", "at the side of", "touching", "next to", "contains", "part of"):
        assert VSR_OPPOSITES[rel] is not None, rel
    assert swap_caption("The cat is touching the dog.", "touching") == "The cat is detached from the dog."
    assert swap_caption("The cup is on the table.", "on") == "The cup is under the table."
    assert swap_caption("On the bed is a cat.", "on") == "Under the bed is a cat."
    assert swap_caption("The cat is with the dog.", "with") is None
    assert meta_category("Left of") == "projective" and meta_category("floating by") == "other"


def test_dev_calibrated_threshold_beats_the_median():
    # test: 8 true rows at cos 0.3, 2 false at 0.1 → the median (0.3) calls every row false
    test = [VSRExample(f"t{i}", f"true {i}", "left of", True) for i in range(8)]
    test += [VSRExample(f"f{i}", f"false {i}", "near", False) for i in range(2)]
    dev = [VSRExample("d0", "dev true", "above", True), VSRExample("d1", "dev false", "above", False)]
    table = {e.caption: 0.3 if e.label else 0.1 for e in (*test, *dev)}
    clip = ScoreClip(table)
    median = vsr_accuracy(clip, test, "threshold", images=blank)
    fitted = vsr_accuracy(clip, test, "threshold", images=blank, dev=dev)
    assert median["threshold"] == pytest.approx(0.3) and median["accuracy"] == pytest.approx(0.2)
    assert 0.1 < fitted["threshold"] < 0.3 and fitted["accuracy"] == 1.0
    assert fitted["threshold_source"] == "fitted on 2 dev rows"
    assert fitted["baseline_prefer_unmodified"] == pytest.approx(0.8)
    assert fitted["human_accuracy"] == pytest.approx(0.954)


def test_per_relation_and_per_category_counts_sum_to_the_overall_ones():
    rows = [
        ("The cat is left of the dog.", "left of", True, 0.5, 0.2),  # right
        ("The cat is right of the dog.", "right of", False, 0.2, 0.6),  # right
        ("The cup is on the table.", "on", True, 0.1, 0.4),  # wrong
        ("The cat is touching the dog.", "touching", True, 0.6, 0.3),  # right
        ("The cat is near the dog.", "near", False, 0.7, 0.1),  # wrong
        ("The cat is with the dog.", "with", True, 0.9, 0.0),  # no opposite: skipped
    ]
    examples, table = [], {}
    for k, (cap, rel, label, s, s_swapped) in enumerate(rows):
        examples.append(VSRExample(f"img{k}", cap, rel, label))
        table[cap] = s
        twin = swap_caption(cap, rel)
        if twin is not None:
            table[twin] = s_swapped
    res = vsr_accuracy(ScoreClip(table), examples, "swap", images=blank)
    assert res["n"] == 5 and res["n_skipped"] == 1 and res["skipped_relations"] == ["with"]
    assert res["accuracy"] == pytest.approx(3 / 5)
    for table_name in ("per_relation", "per_category"):
        groups = res[table_name].values()
        assert sum(g["n"] for g in groups) == res["n"]
        assert sum(g["correct"] for g in groups) == round(res["accuracy"] * res["n"])
    assert res["per_relation"]["on"] == {"n": 1, "correct": 0, "accuracy": 0.0}
    assert res["per_category"]["projective"] == {"n": 2, "correct": 2, "accuracy": 1.0}
    assert res["per_category"]["topological"]["n"] == 2


class FixedScorer:
    """``τ·cos`` of items from a table of cosines (no model)."""

    def __init__(self, cos: dict, tau: float) -> None:
        self.cos, self.tau = cos, torch.tensor(tau)

    def scores(self, items):
        return self.tau * torch.tensor([self.cos[it] for it in items])


def test_cosine_margin_dpo_equals_a_hand_computed_example():
    w, lo = ("a.png", "a cat left of a dog"), ("a.png", "a cat right of a dog")
    cos = {w: 0.31, lo: 0.27}
    ref_cos = {w: 0.30, lo: 0.29}
    tau, beta = 100.0, 10.0
    cfg = TuneConfig(data="x.jsonl", loss="dpo", beta=beta, margin="cosine").validate()
    ref = lambda items: tau * torch.tensor([ref_cos[it] for it in items])  # noqa: E731
    loss, stats = Objective(cfg, FixedScorer(cos, tau), ref).loss([PreferencePair(w, lo)], 0)
    h = (0.31 - 0.27) - (0.30 - 0.29)  # 0.03, a raw cosine margin
    expected = math.log1p(math.exp(-beta * h))  # −log σ(βh)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert stats["margin"] == pytest.approx(h, rel=1e-4)
    # the same loss in our units needs β/τ
    scaled = TuneConfig(data="x.jsonl", loss="dpo", beta=beta / tau).validate()
    loss2, _ = Objective(scaled, FixedScorer(cos, tau), ref).loss([PreferencePair(w, lo)], 0)
    assert float(loss2) == pytest.approx(expected, rel=1e-5)
    assert float(L.margin_in(torch.tensor(3.0), tau, "cosine")) == pytest.approx(0.03)


def test_bad_margin_is_one_line():
    from vlmrm.errors import ConfigError

    with pytest.raises(ConfigError, match="margin"):
        TuneConfig(data="x.jsonl", margin="raw").validate()


def test_implicit_rewards_of_chosen_and_rejected_are_logged():
    w, lo = ("a.png", "left"), ("a.png", "right")
    cos, ref_cos = {w: 0.35, lo: 0.20}, {w: 0.30, lo: 0.25}
    cfg = TuneConfig(data="x.jsonl", loss="dpo", beta=0.1).validate()
    ref = lambda items: 100.0 * torch.tensor([ref_cos[it] for it in items])  # noqa: E731
    _, stats = Objective(cfg, FixedScorer(cos, 100.0), ref).loss([PreferencePair(w, lo)], 0)
    assert stats["reward_chosen"] == pytest.approx(0.1 * 100 * 0.05, rel=1e-4)
    assert stats["reward_rejected"] == pytest.approx(-0.1 * 100 * 0.05, rel=1e-4)
