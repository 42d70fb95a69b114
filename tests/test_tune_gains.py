"""Tuning helps: on drawn red/blue blocks with left/right and above/below relations, DPO,
IPO and contrastive tuning of ``vlmrm-tiny`` each raise held-out VSR and preference accuracy
(the untuned model scores exactly 50%: each image has a true and a false row)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _captions import vsr_dataset

from vlmrm.tune.data.records import write_ranked_sets
from vlmrm.tune.trainer import train
from vlmrm.tune.vsr.relations import vsr_preference_sets
from vlmrm.tune.vsr.rows import load_vsr


@pytest.fixture(scope="module")
def blocks(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("blocks")
    out = {"train_vsr": vsr_dataset(root, 24, 0, with_rows=False), "test_vsr": vsr_dataset(root, 16, 1, with_rows=False)}
    for part in ("train", "test"):
        sets, _ = vsr_preference_sets(load_vsr(out[f"{part}_vsr"]))
        out[part] = write_ranked_sets(root / f"{part}_pairs.jsonl", sets)
    return out


@pytest.mark.parametrize(("loss", "lr", "beta"), [("dpo", 1e-3, 1.0), ("ipo", 3e-4, 0.1), ("contrastive", 3e-4, 0.1)])
def test_tuning_raises_heldout_accuracy(blocks, tmp_path: Path, loss: str, lr: float, beta: float) -> None:
    res = train(
        data=str(blocks["train"]), eval_data=str(blocks["test"]), vsr=str(blocks["test_vsr"]), model="vlmrm-tiny",
        device="cpu", loss=loss, steps=30, lr=lr, beta=beta, batch_size=16, out=str(tmp_path / loss),
        progress=False, tensorboard=loss == "dpo", log_every=0, checkpoint_every=0,
    )  # fmt: skip
    assert res.before["vsr/swap_accuracy"] == 0.5 and res.before["vsr/swap_n"] == 32
    assert res.after["vsr/swap_accuracy"] > res.before["vsr/swap_accuracy"]
    assert res.after["pref/accuracy"] > res.before["pref/accuracy"]
    # the "always prefer the unmodified caption" shortcut scores 50% on this balanced data
    assert res.after["pref/baseline_prefer_unmodified"] == 0.5
    assert res.after["vsr/baseline_prefer_unmodified"] == 0.5
    if loss == "dpo":  # TensorBoard has the implicit rewards of the chosen and rejected captions
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(tmp_path / loss / "tb")).Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"train/reward_chosen", "train/reward_rejected"} <= tags
        chosen = [e.value for e in acc.Scalars("train/reward_chosen")]
        assert len(chosen) == 30 and chosen[0] == pytest.approx(0.0, abs=1e-5)
