"""Captioner training: ClipCap and CapDec lower the loss; Ctrl-C then resume equals a straight run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _caption import caption_set, save_tiny_lm
from safetensors.torch import load_file

from vlmrm.caption import trainer as trainer_mod
from vlmrm.caption.features import capdec_noise
from vlmrm.caption.settings import CaptionTrainSettings
from vlmrm.caption.train import main
from vlmrm.cli.args import parse_settings


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("capdata")
    ann, images = caption_set(root, n=4, split="train")
    return ann, images, save_tiny_lm(root / "lm")


def _argv(setup, out, *extra):
    ann, images, lm = setup
    return [f"data={ann}", f"images={images}", f"lm={lm}", "tokenizer=clip", "model=vlmrm-tiny",
            "device=cpu", "prefix_length=4", "mapper_layers=2", "mapper_heads=2", "batch_size=4",
            "warmup=2", "lr=5e-3", "progress=false", "log_every=1", f"out={out}", *extra]  # fmt: skip


def _full_loss(tr) -> float:
    ts = tr.train_set
    with torch.no_grad():
        return float(trainer_mod.batch_loss(tr.captioner, ts.features[ts.rows].float(), ts.tokens))


@pytest.mark.parametrize("mode", ["clipcap", "capdec"])
def test_a_few_steps_lower_the_loss(setup, tmp_path, mode):
    cfg = parse_settings(
        CaptionTrainSettings, _argv(setup, tmp_path / mode, f"mode={mode}", "epochs=8")
    )
    tr = trainer_mod.CaptionTrainer(cfg)
    assert len(tr.train_set) == 8  # 4 images × 2 captions
    if mode == "capdec":  # one feature per caption: its text embedding
        assert tr.train_set.features.shape[0] == 8
    before = _full_loss(tr)
    lm_before = {k: v.clone() for k, v in tr.captioner.lm.state_dict().items()}
    assert tr.run() is False and tr.step == 16
    after = _full_loss(tr)
    assert after < before - 0.2, (before, after)  # a random LM moves ~1 nat at most
    assert all(torch.equal(v, lm_before[k]) for k, v in tr.captioner.lm.state_dict().items())
    assert (tmp_path / mode / "tb").is_dir() and (tmp_path / mode / "mapper.safetensors").is_file()


def test_capdec_noise_has_the_variance_and_unit_norm():
    """normalize(e + ε) with ε ~ N(0, σ²·I): unit rows, moved away from e by as much as that
    noise moves a unit vector. The reference is the distribution of cos(e, e + ε) for a unit
    e, drawn here with NumPy (e = the first axis: the noise is isotropic): its mean and spread
    must match those of the library's rows, for two variances."""
    d, n = 64, 4000
    e = torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(1)), dim=-1)
    rng = np.random.default_rng(7)
    for variance in (0.016, 0.004):
        noisy = capdec_noise(e, variance, torch.Generator().manual_seed(0))
        assert torch.allclose(noisy.norm(dim=-1), torch.ones(n), atol=1e-5)
        cos = (noisy * e).sum(-1).double().numpy()
        eps = rng.normal(0.0, variance**0.5, size=(200_000, d))
        eps[:, 0] += 1.0
        ref = eps[:, 0] / np.linalg.norm(eps, axis=1)
        assert abs(cos.mean() - ref.mean()) < 4 * ref.std() / n**0.5 + 1e-4, (variance, cos.mean(), ref.mean())
        assert cos.std() == pytest.approx(ref.std(), rel=0.1), (variance, cos.std(), ref.std())
    # seeded: the same generator seed gives the same rows, another seed other rows
    again = capdec_noise(e, 0.016, torch.Generator().manual_seed(0))
    assert torch.equal(again, capdec_noise(e, 0.016, torch.Generator().manual_seed(0)))
    assert not torch.allclose(again, capdec_noise(e, 0.016, torch.Generator().manual_seed(1)))


class _StopAfter:
    """A GracefulStop whose signal 'arrives' after ``n`` polls."""

    n = 3

    def __init__(self):
        self.polls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __bool__(self):
        self.polls += 1
        return self.polls >= self.n


def test_ctrl_c_then_resume_equals_a_straight_run(setup, tmp_path, monkeypatch, capsys):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(_argv(setup, straight, "epochs=2", "mode=capdec")) == 0
    with monkeypatch.context() as m:
        m.setattr(trainer_mod, "GracefulStop", _StopAfter)
        assert main(_argv(setup, cut, "epochs=2", "mode=capdec")) == 130
    assert torch.load(cut / "checkpoint.pt", weights_only=False)["step"] == 3
    assert "run the same command to resume" in capsys.readouterr().err
    assert main(_argv(setup, cut, "epochs=2", "mode=capdec")) == 0
    assert "resuming" in capsys.readouterr().err
    a, b = load_file(straight / "mapper.safetensors"), load_file(cut / "mapper.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    doc = json.loads((cut / "train.json").read_text())
    assert doc["step"] == 4 and [h["step"] for h in doc["history"]] == [1, 2, 3, 4]


def test_bad_settings_are_one_line(setup, tmp_path, capsys):
    assert main(["mode=clipcup", "data=x.json"]) == 2
    assert "mode" in capsys.readouterr().err
    assert main(_argv(setup, tmp_path / "o", "lm=" + str(tmp_path / "no-lm"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "language model" in err[0]


def _cut_at_3(setup, out, monkeypatch, *extra):
    with monkeypatch.context() as m:
        m.setattr(trainer_mod, "GracefulStop", _StopAfter)
        assert main(_argv(setup, out, "epochs=2", "mode=capdec", *extra)) == 130


def _same_mapper(a_dir, b_dir) -> bool:
    a, b = load_file(a_dir / "mapper.safetensors"), load_file(b_dir / "mapper.safetensors")
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_checkpoints_are_units_and_a_damaged_newest_one_is_skipped(setup, tmp_path, monkeypatch, capsys):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(_argv(setup, straight, "epochs=2", "mode=capdec")) == 0
    _cut_at_3(setup, cut, monkeypatch, "checkpoint_every=1")
    units = sorted(p.name for p in (cut / "checkpoints").iterdir())
    assert units == ["step_000000002", "step_000000003"]  # the last two are kept
    manifest = json.loads((cut / "checkpoints" / "step_000000003" / "manifest.json").read_text())
    assert manifest["step"] == 3 and set(manifest["files"]) == {"checkpoint.pt"}
    newest = cut / "checkpoints" / "step_000000003" / "checkpoint.pt"
    assert (cut / "checkpoint.pt").read_bytes() == newest.read_bytes()
    newest.write_bytes(newest.read_bytes()[:-10])  # cut short after it was published
    capsys.readouterr()
    assert main(_argv(setup, cut, "epochs=2", "mode=capdec", "checkpoint_every=1")) == 0
    err = capsys.readouterr().err
    assert "warning: skipping damaged checkpoint step_000000003: checkpoint.pt has" in err
    assert f"resuming {cut} at step 2" in err and "Traceback" not in err
    assert _same_mapper(straight, cut)
    assert json.loads((cut / "train.json").read_text())["step"] == 4


def test_a_checkpoint_of_the_single_file_layout_still_resumes(setup, tmp_path, monkeypatch, capsys):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(_argv(setup, straight, "epochs=2", "mode=capdec")) == 0
    _cut_at_3(setup, cut, monkeypatch)
    state = torch.load(cut / "checkpoint.pt", weights_only=False)
    import shutil

    shutil.rmtree(cut / "checkpoints")  # what a run saved before checkpoint units left behind
    (cut / "checkpoint.pt").unlink()
    torch.save(state, cut / "checkpoint.pt")
    capsys.readouterr()
    assert main(_argv(setup, cut, "epochs=2", "mode=capdec")) == 0
    assert f"resuming {cut} at step 3" in capsys.readouterr().err
    assert _same_mapper(straight, cut)
    assert (cut / "checkpoints" / "step_000000004" / "checkpoint.pt").is_file()
    # a damaged single-file checkpoint is one error line
    shutil.rmtree(cut / "checkpoints")
    (cut / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(_argv(setup, cut, "epochs=2", "mode=capdec")) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read {cut / 'checkpoint.pt'}")
    assert "use resume=false" in lines[0] and "Traceback" not in err
