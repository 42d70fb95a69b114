"""The reward head against an independent NumPy implementation of the VLM-RM formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vlmrm
from vlmrm.errors import ConfigError


def _np_text_embeddings(clip: vlmrm.ClipModel, prompts: list[str]) -> np.ndarray:
    """Text embeddings straight from open_clip (not through the toolkit's cache)."""
    with torch.no_grad():
        e = clip.model.encode_text(clip.tokenizer(prompts)).double().numpy()
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def _np_reward(s: np.ndarray, goal: np.ndarray, baseline: np.ndarray, alpha: float) -> np.ndarray:
    """R(s) = 1 - 1/2 ||(alpha P + (1 - alpha) I)(s - g)||^2 with an explicit D×D matrix."""
    s = s / np.linalg.norm(s, axis=-1, keepdims=True)
    g, b = goal.mean(0), baseline.mean(0)
    d = (g - b)[:, None]
    proj = d @ d.T / float((d.T @ d)[0, 0])
    m = alpha * proj + (1 - alpha) * np.eye(len(g))
    diff = (s - g) @ m.T
    return 1 - 0.5 * (diff**2).sum(-1)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize(
    "goal,baseline",
    [
        (["a humanoid robot kneeling"], ["a humanoid robot"]),
        (
            ["a humanoid robot kneeling", "a robot on its knees", "kneeling"],
            ["a humanoid robot", "a robot standing"],
        ),
    ],
)
def test_reward_matches_numpy_formula(tiny_clip, frames, alpha, goal, baseline):
    reward = vlmrm.CLIPReward(tiny_clip, goal=goal, baseline=baseline, alpha=alpha)
    got = reward(frames)
    s = tiny_clip.embed_images(frames).double().numpy()
    want = _np_reward(s, _np_text_embeddings(tiny_clip, goal), _np_text_embeddings(tiny_clip, baseline), alpha)
    assert got.shape == (len(frames),)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The rewards of different frames differ: the test is not comparing constants.
    assert np.ptp(want) > 1e-4


def test_alpha_zero_single_prompt_is_cosine(tiny_clip, frames):
    reward = vlmrm.CLIPReward(tiny_clip, goal="a cart with an upright pole", baseline="a cart", alpha=0.0)
    s = tiny_clip.embed_images(frames).double().numpy()
    g = _np_text_embeddings(tiny_clip, ["a cart with an upright pole"])[0]
    cos = s @ g / np.linalg.norm(s, axis=-1)
    np.testing.assert_allclose(reward(frames), cos, atol=1e-5)


def test_alpha_and_prompts_change_without_reencoding_frames(tiny_clip, frames):
    reward = vlmrm.CLIPReward(tiny_clip, goal="kneeling", baseline="standing", alpha=0.0)
    emb = reward.embed(frames)
    calls = tiny_clip.image_calls
    grid = reward.reward_from_embeddings(emb, alpha=[0.0, 0.5, 1.0])
    assert grid.shape == (3, len(frames))
    for i, a in enumerate([0.0, 0.5, 1.0]):
        reward.set_alpha(a)
        np.testing.assert_allclose(grid[i].numpy(), reward.reward_from_embeddings(emb).numpy(), atol=1e-7)
    other = reward.reward_from_embeddings(emb, alpha=0.5, goal="lying down")
    want = _np_reward(
        emb.double().numpy(),
        _np_text_embeddings(tiny_clip, ["lying down"]),
        _np_text_embeddings(tiny_clip, ["standing"]),
        0.5,
    )
    np.testing.assert_allclose(other.numpy(), want, atol=1e-5)
    assert tiny_clip.image_calls == calls, "changing alpha or prompts must not re-encode frames"


def test_reward_grid_one_pass_for_goals_and_alphas(tiny_clip, frames):
    reward = vlmrm.CLIPReward(tiny_clip, goal="kneeling", baseline="a robot", alpha=0.0)
    before = tiny_clip.image_calls
    grid = reward.reward_grid(frames, goals=["kneeling", ["sitting", "sitting down"]], alphas=[0, 0.5, 1])
    assert tiny_clip.image_calls - before == 1  # 8 frames < batch size: one image-tower call
    assert grid.shape == (2, 3, len(frames))
    s = tiny_clip.embed_images(frames).double().numpy()
    want = _np_reward(
        s, _np_text_embeddings(tiny_clip, ["sitting", "sitting down"]), _np_text_embeddings(tiny_clip, ["a robot"]), 1.0
    )
    np.testing.assert_allclose(grid[1, 2].numpy(), want, atol=1e-5)


def test_projection_matrix_matches_formula(tiny_clip):
    reward = vlmrm.CLIPReward(tiny_clip, goal="kneeling", baseline="a robot", alpha=0.3)
    m = reward.projection_matrix().numpy()
    d = reward.direction.double().numpy()
    np.testing.assert_allclose(m, 0.3 * np.outer(d, d) / d.dot(d) + 0.7 * np.eye(len(d)), atol=1e-12)
    # M is idempotent only at alpha = 1 (a projection).
    p = reward.projection_matrix(1.0).numpy()
    np.testing.assert_allclose(p @ p, p, atol=1e-10)


def test_renormalized_means_option(tiny_clip, frames):
    goal, base = ["kneeling", "on its knees"], ["a robot", "a machine"]
    ref = vlmrm.CLIPReward(tiny_clip, goal=goal, baseline=base, alpha=0.5)
    ren = vlmrm.CLIPReward(tiny_clip, goal=goal, baseline=base, alpha=0.5, renormalize_means=True)
    assert abs(float(ref.goal_embedding.norm()) - 1) > 1e-4  # the reference does not renormalise
    assert abs(float(ren.goal_embedding.norm()) - 1) < 1e-6
    assert not np.allclose(ref(frames), ren(frames))


def test_torch_input_gives_tensor_numpy_gives_array(tiny_clip, frames):
    reward = vlmrm.CLIPReward(tiny_clip, goal="kneeling")
    out_np = reward(frames)
    out_t = reward(torch.from_numpy(frames))
    assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_np, out_t.numpy(), atol=1e-7)
    assert reward(frames[0]).shape == (1,)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "high"])
def test_alpha_out_of_range(tiny_clip, alpha):
    with pytest.raises(ConfigError, match="alpha"):
        vlmrm.CLIPReward(tiny_clip, goal="kneeling", baseline="a robot", alpha=alpha)


@pytest.mark.parametrize("goal", ["", "   ", [], ["ok", ""], [3], None])
def test_bad_prompts(tiny_clip, goal):
    with pytest.raises(ConfigError, match="goal"):
        vlmrm.CLIPReward(tiny_clip, goal=goal, baseline="a robot")


def test_goal_equal_to_baseline_is_rejected(tiny_clip):
    with pytest.raises(ConfigError, match="same embedding"):
        vlmrm.CLIPReward(tiny_clip, goal="a humanoid robot", baseline="a humanoid robot", alpha=0.5)


def test_alpha_needs_baseline(tiny_clip):
    with pytest.raises(ConfigError, match="baseline"):
        vlmrm.CLIPReward(tiny_clip, goal="kneeling", alpha=0.5)
    reward = vlmrm.CLIPReward(tiny_clip, goal="kneeling")
    with pytest.raises(ConfigError, match="baseline"):
        reward.set_alpha(1.0)


def test_not_a_clip_model():
    with pytest.raises(ConfigError, match="load_clip"):
        vlmrm.CLIPReward("ViT-B-32", goal="kneeling")


def test_clipscore_reward_matches_numpy_reference(tiny_clip, frames):
    """RLCF's reward 2.5·max(cos, 0) against cosines computed in NumPy from open_clip directly."""
    texts = ["a photo of a cat", "a red square", "pole and cart"]
    reward = vlmrm.CLIPScoreReward(tiny_clip)
    got = reward(frames, texts).numpy()
    img = tiny_clip.embed_images(frames).double().numpy()
    img = img / np.linalg.norm(img, axis=-1, keepdims=True)
    cos = img @ _np_text_embeddings(tiny_clip, texts).T
    np.testing.assert_allclose(got, 2.5 * np.maximum(cos, 0.0), atol=1e-5)
    assert got.shape == (len(frames), 3)
    assert (got == 0).any() or (cos > 0).all()
    half = vlmrm.CLIPScoreReward(tiny_clip, scale=1.0)
    np.testing.assert_allclose(half(frames, texts).numpy(), got / 2.5, atol=1e-6)
    table = reward.table(tiny_clip.embed_images(frames[:2]), tiny_clip.embed_texts(texts))
    np.testing.assert_allclose(table.numpy(), got[:2], atol=1e-6)


def test_clip_score_clamps_negative_cosines():
    cos = torch.tensor([-0.5, 0.0, 0.2, 1.0])
    np.testing.assert_allclose(vlmrm.clip_score(cos).numpy(), [0.0, 0.0, 0.5, 2.5], atol=1e-7)
    with pytest.raises(ConfigError, match="load_clip"):
        vlmrm.CLIPScoreReward("ViT-B-32")
