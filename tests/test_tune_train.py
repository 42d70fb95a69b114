"""Evaluation (balanced preference accuracy, VSR, probe) and the trainer end to end."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import vlmrm
from vlmrm.errors import ConfigError
from vlmrm.tune import data as D
from vlmrm.tune.cli import main
from vlmrm.tune.eval import metrics as E
from vlmrm.tune.objectives import losses as L
from vlmrm.tune.run_data import load_run_data
from vlmrm.tune.settings import TuneConfig
from vlmrm.tune.trainer import Trainer, select_parameters, train

# One torch thread for this module (see the fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


COLORS = {
    "red": (230, 20, 20),
    "green": (20, 200, 20),
    "blue": (20, 20, 230),
    "yellow": (230, 230, 20),
    "white": (240, 240, 240),
    "black": (10, 10, 10),
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 images of a coloured square; each ranks its own colour's caption first."""
    d = tmp_path_factory.mktemp("toy")
    (d / "img").mkdir()
    rng = np.random.default_rng(0)
    names = list(COLORS)
    rows = []
    for k in range(24):
        c = names[k % len(names)]
        img = np.full((32, 32, 3), 128, np.uint8) + rng.integers(0, 20, (32, 32, 3), dtype=np.uint8)
        x, y = rng.integers(2, 14, 2)
        img[y : y + 16, x : x + 16] = COLORS[c]
        iio.imwrite(d / "img" / f"{k}.png", img)
        others = [o for o in names if o != c]
        rng.shuffle(others)
        rows.append({"image": f"img/{k}.png", "captions": [f"a {c} square"] + [f"a {o} square" for o in others[:2]]})
    with (d / "ranked.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return d / "ranked.jsonl"


def cfg(toy: Path, out: Path, **kw) -> TuneConfig:
    base = dict(
        data=str(toy), model="vlmrm-tiny", device="cpu", out=str(out), steps=3, batch_size=6,
        lr=1e-3, log_every=0, tensorboard=False, progress=False, probe_size=8,
    )
    base.update(kw)
    return TuneConfig(**base)


# --------------------------------------------------------------------------- evaluation


def spatial_sets(tmp_path: Path) -> list[D.RankedSet]:
    examples = []
    pairs = [("red", "blue"), ("green", "white"), ("yellow", "black")]
    for k, (a, b) in enumerate(pairs):
        img = np.full((32, 32, 3), 128, np.uint8)
        img[8:24, 2:14], img[8:24, 18:30] = COLORS[a], COLORS[b]
        iio.imwrite(tmp_path / f"s{k}.png", img)
        examples.append((str(tmp_path / f"s{k}.png"), f"a {a} block left of a {b} block"))
    examples.append((str(tmp_path / "s0.png"), "a grey sky above a red block"))  # no flip set
    return D.build_ranked_sets(examples, tmp_path / "aug", clip=None)


def test_prefer_unmodified_shortcut_scores_50_percent_on_balanced_data(tmp_path: Path) -> None:
    sets = spatial_sets(tmp_path)
    shortcut = E.prefer_unmodified_scores(sets)
    res = E.pairwise_accuracy(sets, shortcut)
    assert res["n_unmodified_preferred"] > res["n_modified_preferred"] > 0  # unequal mix...
    assert res["accuracy"] == pytest.approx(0.5)  # ...still exactly 50% after balancing
    assert res["baseline_prefer_unmodified"] == pytest.approx(0.5)
    assert res["raw_accuracy"] > 0.5  # the naive number rewards the shortcut
    opposite = [1.0 - s for s in shortcut]
    assert E.pairwise_accuracy(sets, opposite)["accuracy"] == pytest.approx(0.5)
    oracle = [-np.asarray(s.ranks, float) for s in sets]
    assert E.pairwise_accuracy(sets, oracle)["accuracy"] == 1.0
    # data where every edit is rejected cannot be balanced: those pairs are left out
    only_orig = [s for s in sets if s.id.endswith("/orig")]
    res = E.pairwise_accuracy(only_orig, E.prefer_unmodified_scores(only_orig))
    assert "note" in res and np.isnan(res["accuracy"])


class FakeClip:
    """Image embedding = which colour is left; text embedding = what the caption claims."""

    def embed_images(self, frames: np.ndarray) -> torch.Tensor:
        red_left = frames[:, 16, 5, 0] > frames[:, 16, 5, 2]
        return torch.stack([torch.tensor([1.0, 0.0]) if r else torch.tensor([0.0, 1.0]) for r in red_left])

    def embed_texts(self, texts) -> torch.Tensor:
        out = []
        for t in texts:
            red_left = ("red block is left" in t) or ("blue block is right" in t)
            out.append(torch.tensor([0.9, 0.1]) if red_left else torch.tensor([0.1, 0.9]))
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)

    def clear_text_cache(self) -> None:
        pass


def test_vsr_swap_and_threshold_and_probe(tmp_path: Path) -> None:
    rows = []
    for k, (a, b) in enumerate([("red", "blue"), ("blue", "red")]):
        img = np.full((32, 32, 3), 128, np.uint8)
        img[8:24, 2:14], img[8:24, 18:30] = COLORS[a], COLORS[b]
        iio.imwrite(tmp_path / f"v{k}.png", img)
        for rel in ("left of", "right of"):
            cap = f"The red block is {rel} the blue block."
            truth = (a == "red") == (rel == "left of")
            rows.append({"image": f"v{k}.png", "caption": cap, "relation": rel, "label": int(truth)})
    rows.append({"image": "v0.png", "caption": "The red block is with the blue block.", "relation": "with", "label": 0})
    with (tmp_path / "vsr.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    ex = D.load_vsr(tmp_path / "vsr.jsonl")
    clip = FakeClip()
    sw = E.vsr_accuracy(clip, ex, "swap")
    assert (sw["accuracy"], sw["n"], sw["n_skipped"]) == (1.0, 4, 1)  # "with" has no opposite
    assert sw["skipped_relations"] == ["with"]
    th = E.vsr_accuracy(clip, ex[:4], "threshold")
    assert th["accuracy"] == 1.0 and th["threshold_source"].startswith("median")
    assert E.vsr_accuracy(clip, ex[:4], "threshold", threshold=2.0)["accuracy"] == 0.5
    assert E.fit_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == pytest.approx(0.5)
    probe = [(ex[0].image, ex[0].caption), (ex[3].image, ex[3].caption)]
    p = E.probe_rewards(clip, probe)
    assert p["top1"] == 1.0 and p["matched"] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert p["gap"] > 0


# --------------------------------------------------------------------------- trainer


@pytest.mark.parametrize("loss", ["dpo", "ipo", "hinge", "bt", "listwise", "contrastive", "reinforce"])
def test_each_loss_trains_end_to_end(toy: Path, tmp_path: Path, loss: str) -> None:
    extra = {"kl_coef": 0.1} if loss == "reinforce" else {}
    res = train(cfg(toy, tmp_path / loss, loss=loss, label_smoothing=0.0, **extra))
    assert res.step == 3 and len(res.losses) == 3
    assert all(np.isfinite(v) for _, v in res.losses)
    assert res.checkpoint is not None and res.checkpoint.is_file()
    assert 0.0 <= res.after["pref/accuracy"] <= 1.0 and "probe/gap" in res.before
    metrics = json.loads((tmp_path / loss / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["arch"] == "vlmrm-tiny"
    # at step 0 the model is its own reference, h = 0: each loss has a known value
    at_h0 = {"dpo": np.log(2), "ipo": (1 / (2 * 0.1)) ** 2, "hinge": 1.0, "listwise": np.log(6)}
    if loss in at_h0:
        assert res.losses[0][1] == pytest.approx(at_h0[loss], rel=1e-4)


def test_dpo_loss_decreases_and_checkpoint_reloads(toy: Path, tmp_path: Path) -> None:
    c = cfg(toy, tmp_path / "run", steps=24, batch_size=12, tensorboard=True, eval_fraction=0.25)
    trainer = Trainer(c)
    res = trainer.run()
    losses = np.array([v for _, v in res.losses])
    assert losses[0] == pytest.approx(np.log(2), abs=1e-4)  # h = 0 at step 0
    assert losses[-6:].mean() < 0.6 * losses[:3].mean()
    assert res.after["probe/gap"] > res.before["probe/gap"]
    assert list((tmp_path / "run" / "tb").iterdir())
    # the checkpoint drops into the reward core and gives the same embeddings
    reloaded = vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=res.checkpoint)
    frames = np.stack([iio.imread(p) for p in sorted((toy.parent / "img").glob("*.png"))[:4]])
    texts = ["a red square", "a blue square"]
    trainer.clip.clear_text_cache()
    assert torch.allclose(reloaded.embed_images(frames), trainer.clip.embed_images(frames), atol=1e-6)
    assert torch.allclose(reloaded.embed_texts(texts), trainer.clip.embed_texts(texts), atol=1e-6)
    reward = vlmrm.CLIPReward(reloaded, goal="a red square")
    assert reward(frames).shape == (4,)
    fresh = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    assert not torch.allclose(fresh.embed_texts(texts), reloaded.embed_texts(texts), atol=1e-4)


def test_interrupt_saves_and_resume_matches_an_uninterrupted_run(toy: Path, tmp_path: Path) -> None:
    straight = train(cfg(toy, tmp_path / "a", steps=5, loss="reinforce", kl_coef=0.05))

    def interrupt(step: int, stats: dict) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    c = cfg(toy, tmp_path / "b", steps=5, loss="reinforce", kl_coef=0.05)
    first = train(c, callback=interrupt)
    assert first.interrupted and first.step == 2 and first.checkpoint.is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    second = train(c)
    assert not second.interrupted and second.step == 5
    assert [s for s, _ in second.losses] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([v for _, v in second.losses], [v for _, v in straight.losses], rtol=1e-4, atol=1e-6)
    a = vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=straight.checkpoint)
    b = vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=second.checkpoint)
    assert torch.allclose(a.embed_texts(["a red square"]), b.embed_texts(["a red square"]), atol=1e-5)
    # a finished run resumed with more steps continues the count
    longer = train(cfg(toy, tmp_path / "b", steps=7, loss="reinforce", kl_coef=0.05))
    assert longer.step == 7 and len(longer.losses) == 7
    with pytest.raises(ConfigError, match="other settings.*beta"):
        train(cfg(toy, tmp_path / "b", steps=8, loss="reinforce", kl_coef=0.05, beta=0.5))


def test_lock_and_attention_only_training(toy: Path, tmp_path: Path) -> None:
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    named = select_parameters(clip.model, lock="text", train_params="attn_in_proj")
    assert named and all(n.startswith("visual.") and "attn.in_proj_" in n for n, _ in named)
    assert not clip.model.logit_scale.requires_grad
    with pytest.raises(ConfigError, match="nothing to train"):
        select_parameters(torch.nn.Linear(2, 2), train_params="attn_in_proj")
    trainer = Trainer(cfg(toy, tmp_path / "r", steps=2, lock="text", train_params="attn_in_proj", precompute_ref=False))
    trainer.run()
    before = dict(vlmrm.load_clip("vlmrm-tiny", device="cpu").model.state_dict())
    after = trainer.clip.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.") and "attn.in_proj_" in k for k in changed)


def test_evaluate_only_run_with_vsr(toy: Path, tmp_path: Path) -> None:
    img = str(toy.parent / "img" / "0.png")  # a red square
    rows = [
        {"image": img, "caption": "the red square is left of the grey", "relation": "left of", "label": 1},
        {"image": img, "caption": "the red square is above the grey", "relation": "above", "label": 0},
        {"image": img, "caption": "the red square is with the grey", "relation": "with", "label": 1},
    ]
    (tmp_path / "vsr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = train(cfg(toy, tmp_path / "e", steps=0, vsr=str(tmp_path / "vsr.jsonl")))
    assert res.checkpoint is None and res.after == res.before
    assert res.before["vsr/swap_n"] == 2 and res.before["vsr/swap_skipped"] == 1
    assert res.before["vsr/baseline_prefer_unmodified"] == pytest.approx(2 / 3)
    assert 0.0 <= res.before["vsr/threshold_accuracy"] <= 1.0
    assert not (tmp_path / "e" / "model.safetensors").exists()


def test_cli_errors_are_one_line(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    assert "loss=dpo" in capsys.readouterr().out
    cases = [
        (["data=x.jsonl", "betta=0.2"], "unknown setting 'betta' (did you mean 'beta'?)"),
        (["data=x.jsonl", "beta=abc"], "bad value for 'beta'"),
        (["loss=ppo", f"data={toy}"], "loss='ppo' is not one of"),
        (["amp=off", f"data={toy}"], "unknown setting 'amp'"),
        (["precision=int8", f"data={toy}"], "precision='int8' is not one of"),
        (["model=vlmrm-tiny"], "data=... is required"),
        (["justaword"], "key=value"),
        ([f"data={tmp_path / 'missing.jsonl'}", "model=vlmrm-tiny"], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(toy.read_text().splitlines()[0].replace('"img/', f'"{toy.parent}/img/') + "\n{oops\n")
    assert main([f"data={bad}", "model=vlmrm-tiny", "device=cpu", f"out={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.jsonl:2: invalid JSON" in err and "\n" not in err


def test_contrastive_batches_keep_every_frame_of_a_shared_caption(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = Trainer(cfg(toy, tmp_path / "c", loss="contrastive", batch_size=12))
    trainer.data = load_run_data(trainer.cfg)
    trainer._build_model()
    seen = {}
    real = L.clip_contrastive_loss

    def spy(img, txt, tau, positives=None):
        seen["positives"] = positives
        return real(img, txt, tau, positives)

    monkeypatch.setattr(L, "clip_contrastive_loss", spy)
    items = trainer.data.units[:12]  # the distinct image–caption positives
    loss, stats = trainer.objective.loss(items, step=0)
    assert loss.requires_grad and "skipped" not in stats
    pos = seen["positives"]
    n_captions = len({t for _, t in items})
    assert pos.shape == (12, n_captions) and n_captions < 12  # captions repeat in the toy set
    assert pos.sum() == 12 and (pos.sum(1) == 1).all() and (pos.sum(0) >= 2).any()


def test_mixed_precision_trains_through_the_models_autocast(toy: Path, tmp_path: Path) -> None:
    """precision=amp on CPU: fp32 weights, the ClipModel's bf16 autocast, h = 0 at step 0."""
    trainer = Trainer(cfg(toy, tmp_path / "amp", precision="amp", steps=2))
    res = trainer.run()
    assert trainer.clip.precision == "amp" and trainer.clip.model.visual.conv1.weight.dtype == torch.float32
    assert not trainer.scaler.is_enabled()  # bf16 needs no loss scaling
    assert res.losses[0][1] == pytest.approx(np.log(2), rel=1e-4)
    assert all(np.isfinite(v) for _, v in res.losses)
    with pytest.raises(ConfigError, match="precision=fp16 mixed precision needs CUDA"):
        train(cfg(toy, tmp_path / "fp16", precision="fp16"))


def test_a_run_saved_with_the_old_keys_resumes(toy: Path, tmp_path: Path) -> None:
    """Checkpoints written before amp/reward/quiet were renamed compare equal in today's keys."""
    c = cfg(toy, tmp_path / "old", steps=2, loss="reinforce")
    train(c)
    # the layout of those runs: weights and state side by side in out/
    unit = tmp_path / "old" / "checkpoints" / "step_000000002"
    state_path = tmp_path / "old" / "trainer_state.pt"
    shutil.move(unit / "trainer_state.pt", state_path)
    shutil.rmtree(tmp_path / "old" / "checkpoints")
    state = torch.load(state_path, weights_only=False)
    saved = dict(state["config"])
    for new, old, value in (("precision", "amp", "off"), ("reinforce_reward", "reward", "correct"), ("progress", "quiet", True)):
        saved.pop(new)
        saved[old] = value
    saved["pretrained"] = ""
    state["config"] = saved
    torch.save(state, state_path)
    longer = train(cfg(toy, tmp_path / "old", steps=3, loss="reinforce", precision="fp32"))
    assert longer.step == 3 and [s for s, _ in longer.losses] == [1, 2, 3]
    with pytest.raises(ConfigError, match="other settings.*reinforce_reward"):
        train(cfg(toy, tmp_path / "old", steps=4, loss="reinforce", reinforce_reward="rank"))


def test_progress_false_still_says_what_was_set_up_and_saved(
    toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``progress=false`` drops the per-step lines only: a run that prints nothing looks hung."""
    out = tmp_path / "quiet"
    assert main([f"data={toy}", "model=vlmrm-tiny", "device=cpu", f"out={out}", "steps=2", "batch_size=6",
                 "log_every=1", "tensorboard=false", "probe_size=8", "progress=false"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("tuning vlmrm-tiny with loss=dpo: "), lines
    assert lines[-1].startswith(f"saved {out / 'model.safetensors'}; load it with vlmrm.load_clip("), lines
    assert any(ln.startswith("before: ") for ln in lines) and any(ln.startswith("after: ") for ln in lines)
    assert not any(ln.startswith("step ") for ln in lines), lines  # the per-step lines are progress
    assert main([f"data={toy}", "model=vlmrm-tiny", "device=cpu", f"out={tmp_path / 'loud'}", "steps=2",
                 "batch_size=6", "log_every=1", "tensorboard=false", "probe_size=8"]) == 0
    assert [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ")] != []
