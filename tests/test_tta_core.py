"""RLCF building blocks: the REINFORCE maths, rewards, view generation, prompt learner, reset state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vlmrm
from vlmrm.errors import ConfigError
from vlmrm.reward import clip_score
from vlmrm.tta import CLIPFeedback, PromptLearner, make_views
from vlmrm.tta.core.episodic import ResetState, call_stacked, stack_params, trainable_params
from vlmrm.tta.core.rlcf import (
    advantages,
    reinforce_loss,
    sample_answers,
    select_confident,
)


def test_advantage_is_reward_minus_mean_over_k():
    r = torch.tensor([[0.8, 0.2, 0.5], [1.0, 1.0, 1.0]])
    adv = advantages(r)
    torch.testing.assert_close(adv, torch.tensor([[0.3, -0.3, 0.0], [0.0, 0.0, 0.0]]))
    std = advantages(r, "std")
    torch.testing.assert_close(std[0], torch.tensor([0.3, -0.3, 0.0]) / (0.3 + 1e-5))
    assert advantages(torch.tensor([[0.7]])).item() == 0.0
    with pytest.raises(ConfigError):
        advantages(r, "median")


def test_reinforce_loss_matches_hand_computation():
    z = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
    actions = torch.tensor([[1, 0]])
    rewards = torch.tensor([[0.8, 0.2]])  # mean 0.5 → advantages +0.3, -0.3
    loss = reinforce_loss(z, actions, rewards)
    zn = np.array([1.0, 2.0, 0.5])
    logp = zn - math.log(np.exp(zn).sum())
    expected = (0.3 * -logp[1] + -0.3 * -logp[0]) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    # d/dz_c = 1/K Σ_k A_k (p_c - [c = a_k]) = -1/K Σ_k A_k [c = a_k] since Σ A_k = 0
    torch.testing.assert_close(z.grad, torch.tensor([[0.15, -0.15, 0.0]]))


def test_gradient_step_raises_log_prob_of_above_mean_samples():
    torch.manual_seed(0)
    z = torch.randn(4, 10, requires_grad=True)
    actions = sample_answers(z, 3)
    rewards = torch.rand(4, 3)
    before = z.detach().log_softmax(-1).gather(-1, actions)
    reinforce_loss(z, actions, rewards).backward()
    with torch.no_grad():
        after = (z - 0.05 * z.grad).log_softmax(-1).gather(-1, actions)
    best = rewards.argmax(-1, keepdim=True)
    worst = rewards.argmin(-1, keepdim=True)
    assert ((after - before).gather(-1, best) > 0).all()
    assert ((after - before).gather(-1, worst) < 0).all()


def test_sampling_and_selection():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    assert sample_answers(logits, 2).tolist() == [[1, 3]]
    g = torch.Generator().manual_seed(0)
    drawn = sample_answers(logits, 3, "sample", g)
    assert drawn.shape == (1, 3) and len(set(drawn[0].tolist())) == 3
    with pytest.raises(ConfigError):
        sample_answers(logits, 5)
    views = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 5.0, 0.0], [1.0, 1.0, 0.0]])
    assert select_confident(views, 0.5).tolist() == [1, 2]
    assert select_confident(views, 0.01).tolist() == [1]  # at least one view


def test_clip_reward_and_weighted_feedback(tiny_clip):
    assert clip_score(torch.tensor([0.4, -0.2])).tolist() == pytest.approx([1.0, 0.0])
    fb = CLIPFeedback([tiny_clip, tiny_clip], weights=[3, 1])
    assert fb.weights == [0.75, 0.25]
    a = [torch.nn.functional.normalize(torch.randn(2, 64), dim=-1)] * 2
    b = [torch.nn.functional.normalize(torch.randn(5, 64), dim=-1)] * 2
    torch.testing.assert_close(fb.rewards(a, b), 2.5 * (a[0] @ b[0].T).clamp_min(0))
    with pytest.raises(ConfigError):
        CLIPFeedback([tiny_clip], weights=[1, 2])
    with pytest.raises(ConfigError):
        CLIPFeedback([tiny_clip], weights=[0])


def test_views_are_deterministic_and_start_with_the_centre_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(50, 80, 3), dtype=np.uint8)
    v1 = make_views(img, 16, 32, torch.Generator().manual_seed(3))
    v2 = make_views(img, 16, 32, torch.Generator().manual_seed(3))
    v3 = make_views(img, 16, 32, torch.Generator().manual_seed(4))
    assert v1.shape == (16, 3, 32, 32) and v1.dtype == torch.float32
    assert 0.0 <= float(v1.min()) and float(v1.max()) <= 1.0
    torch.testing.assert_close(v1, v2)
    assert not torch.equal(v1[1:], v3[1:])
    torch.testing.assert_close(v1[0], v3[0])  # the centre crop is not random
    # A whole-image box through roi_align is an area resize.
    from vlmrm.tta.core.views import crop_boxes

    boxes = crop_boxes(50, 80, 200, torch.Generator().manual_seed(0))
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 50).all()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (50 * 80)
    assert float(area.min()) >= 0.07 and float(area.max()) <= 1.0


def test_prompt_learner_reproduces_the_text_tower(tiny_clip):
    names = ["tench", "great white shark", "golden_retriever"]
    learner = PromptLearner(tiny_clip, names)
    assert learner.n_ctx == 4 and learner.texts[2] == "a photo of a golden retriever."
    emb = learner(learner.init_ctx)
    torch.testing.assert_close(emb, tiny_clip.embed_texts(learner.texts), atol=1e-5, rtol=0)
    ctx = torch.stack([learner.init_ctx, learner.init_ctx + torch.randn_like(learner.init_ctx)])
    batched = learner(ctx)
    assert batched.shape == (2, 3, 64)
    torch.testing.assert_close(batched[0], emb, atol=1e-6, rtol=0)
    assert not torch.allclose(batched[1], emb)
    rand = PromptLearner(tiny_clip, names, n_ctx=2, ctx_init="")
    assert rand.init_ctx.shape == (2, 64)


def test_stacked_params_match_the_module(tiny_clip):
    visual = tiny_clip.model.visual
    start = trainable_params(tiny_clip.model, "all", within="visual")
    norms = trainable_params(tiny_clip.model, "norm", within="visual")
    assert set(start) == {f"visual.{k}" for k, _ in visual.named_parameters()}
    assert set(norms) < set(start) and all("ln" in k or "norm" in k for k in norms)
    x = torch.randn(2, 3, 3, 64, 64)

    def encode(p, v):
        return tiny_clip.image_features(v, params=p, normalize=False)

    out = call_stacked(encode, stack_params(start, 2), x, module=tiny_clip.model)
    with torch.no_grad():
        ref = torch.stack([visual(x[0]), visual(x[1])])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    one = call_stacked(encode, stack_params(start, 1), x[:1], module=tiny_clip.model)
    torch.testing.assert_close(one, ref[:1], atol=1e-5, rtol=0)
    text = trainable_params(tiny_clip.model, "all", exclude=("visual", "logit_scale", "logit_bias"))
    assert "token_embedding.weight" in text and not any(k.startswith("visual") for k in text)


def test_reset_state_ema():
    p = {"w": torch.zeros(3)}
    st = ResetState(p, ema=True, momentum=0.5, every=2, weight=1.0)
    st.update({"w": torch.full((3,), 4.0)})
    assert torch.equal(st.start["w"], torch.zeros(3))  # not yet: every=2
    st.update({"w": torch.full((3,), 8.0)})
    torch.testing.assert_close(st.start["w"], torch.full((3,), 5.0))  # 0.5·(0.5·0 + 0.5·4) + 0.5·8
    st.reset()
    assert torch.equal(st.start["w"], torch.zeros(3))
    plain = ResetState(p)
    plain.update({"w": torch.ones(3)})
    assert torch.equal(plain.start["w"], torch.zeros(3))
    with pytest.raises(ConfigError):
        ResetState(p, ema=True, momentum=1.5)


def test_fp16_policy_is_refused(tiny_clip):
    from vlmrm.tta import ClassificationTTA

    half = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="bf16")
    with pytest.raises(ConfigError, match="fp32"):
        ClassificationTTA(half, CLIPFeedback(tiny_clip), ["a", "b", "c"])
