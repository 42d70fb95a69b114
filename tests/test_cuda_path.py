"""The reward core, tuning and TTA on the compute device: CUDA on a GPU machine, else the CPU.

These run everywhere; on a machine with CUDA they exercise the GPU path (device-side uint8
preprocessing, fp16 weights by ``precision="auto"``, mixed-precision training with loss
scaling, ``torch.compile`` through Triton) that the CPU-only runs never reach.
"""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import vlmrm
from vlmrm.models import training_precision

pytestmark = pytest.mark.cuda


def _np_reward(s: np.ndarray, g: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    s = s / np.linalg.norm(s, axis=-1, keepdims=True)
    d = (g - b)[:, None]
    m = alpha * (d @ d.T) / float((d.T @ d)[0, 0]) + (1 - alpha) * np.eye(len(g))
    return 1 - 0.5 * (((s - g) @ m.T) ** 2).sum(-1)


def test_reward_on_the_device_matches_numpy(compute_device, frames):
    clip = vlmrm.load_clip("vlmrm-tiny", device=compute_device, precision="fp32")
    assert clip.device.type == compute_device
    reward = vlmrm.CLIPReward(clip, goal="a red square", baseline="a square", alpha=0.5)
    got = reward(frames)
    s = clip.embed_images(frames).double().cpu().numpy()
    g = clip.embed_texts(["a red square"]).double().cpu().numpy()[0]
    b = clip.embed_texts(["a square"]).double().cpu().numpy()[0]
    np.testing.assert_allclose(got, _np_reward(s, g, b, 0.5), atol=1e-5)
    on_device = reward(torch.from_numpy(frames).to(compute_device))
    assert on_device.device.type == compute_device


def test_auto_precision_keeps_the_ranking_of_frames(compute_device):
    """auto is fp16 on CUDA and fp32 on CPU: either way the frames' order must survive."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (48, 64, 64, 3), dtype=np.uint8)
    ref = vlmrm.CLIPReward(vlmrm.load_clip("vlmrm-tiny", device=compute_device, precision="fp32"), goal="a cart")
    fast_clip = vlmrm.load_clip("vlmrm-tiny", device=compute_device, precision="auto")
    assert fast_clip.precision == ("fp16" if compute_device == "cuda" else "fp32")
    fast = vlmrm.CLIPReward(fast_clip, goal="a cart")
    r_ref, r_fast = ref(frames), fast(frames)
    assert spearmanr(r_ref, r_fast).statistic > 0.98
    assert np.abs(r_ref - r_fast).max() < 0.2 * r_ref.std()


def test_gradient_encoders_on_the_device(compute_device, frames):
    clip = vlmrm.load_clip("vlmrm-tiny", device=compute_device, **training_precision("auto", torch.device(compute_device)))
    x = clip.preprocess(frames[:4])
    loss = (clip.image_features(x) @ clip.text_features(clip.tokenize(["a pole", "a cart"])).T).sum()
    loss.backward()
    grads = [p.grad for p in clip.model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert next(clip.model.parameters()).dtype == torch.float32  # mixed precision keeps fp32 weights


def test_tuning_runs_mixed_precision_on_the_device(compute_device, tmp_path):
    """precision=auto: fp16 autocast with loss scaling on CUDA, fp32 on CPU; DPO starts at log 2."""
    from vlmrm.tune import TuneConfig, train

    (tmp_path / "img").mkdir()
    rows = []
    for k, (name, rgb) in enumerate([("red", (255, 0, 0)), ("blue", (0, 0, 255))] * 4):
        img = np.full((32, 32, 3), 128, np.uint8)
        img[8:24, 8:24] = rgb
        iio.imwrite(tmp_path / "img" / f"{k}.png", img)
        other = "blue" if name == "red" else "red"
        rows.append({"image": f"img/{k}.png", "captions": [f"a {name} square", f"a {other} square"]})
    (tmp_path / "ranked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = train(
        TuneConfig(
            data=str(tmp_path / "ranked.jsonl"), model="vlmrm-tiny", device=compute_device, precision="auto",
            out=str(tmp_path / "out"), steps=3, batch_size=4, lr=1e-3, log_every=0, tensorboard=False,
            progress=False, probe_size=4, eval_fraction=0.25,
        )
    )
    assert result.losses[0][1] == pytest.approx(np.log(2), rel=1e-3)
    assert all(np.isfinite(v) for _, v in result.losses)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs and Triton need a GPU")
def test_compiled_tower_on_cuda_matches_eager(frames):
    eager = vlmrm.load_clip("vlmrm-tiny", device="cuda", precision="fp16")
    compiled = vlmrm.load_clip("vlmrm-tiny", device="cuda", precision="fp16", compile=True)
    for n in (8, 5, 3):
        np.testing.assert_allclose(
            compiled.embed_images(frames[:n]).cpu().numpy(), eager.embed_images(frames[:n]).cpu().numpy(), atol=2e-2
        )
