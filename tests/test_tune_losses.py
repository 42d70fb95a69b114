"""Preference-tuning losses against hand-computed NumPy values, and their gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmrm.errors import ConfigError
from vlmrm.tune.objectives import losses as L

# One torch thread for this module (see the fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


H = np.array([-1000.0, -3.0, -0.5, 0.0, 0.25, 2.0, 40.0, 1000.0])


def np_logsigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_dpo_matches_numpy_and_is_finite(beta: float, eps: float) -> None:
    expected = np.mean(-(1 - eps) * np_logsigmoid(beta * H) - eps * np_logsigmoid(-beta * H))
    got = L.dpo_loss(t(H), beta, eps)
    assert torch.isfinite(got)
    assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # gradients stay finite for huge |h| too
    h = t(H).requires_grad_(True)
    L.dpo_loss(h, beta, eps).backward()
    assert torch.isfinite(h.grad).all()


def test_dpo_eps0_is_plain_dpo_and_h0_is_log2() -> None:
    assert L.dpo_loss(t([0.0]), 0.1).item() == pytest.approx(np.log(2.0))
    assert L.dpo_loss(t([1000.0]), 1.0).item() == pytest.approx(0.0, abs=1e-300)
    assert L.dpo_loss(t([-1000.0]), 1.0).item() == pytest.approx(1000.0)


def test_ipo_hinge_bt_match_numpy() -> None:
    beta = 0.25
    assert L.ipo_loss(t(H), beta).item() == pytest.approx(np.mean((H - 1 / (2 * beta)) ** 2))
    assert L.hinge_loss(t(H), beta).item() == pytest.approx(np.mean(np.maximum(0, 1 - beta * H)))
    sw, sl = np.array([3.0, -2.0, 500.0, 0.1]), np.array([1.0, 4.0, -500.0, 0.1])
    got = L.bradley_terry_loss(t(sw), t(sl)).item()
    assert got == pytest.approx(np.mean(-np_logsigmoid(sw - sl)))


def test_weighted_mean() -> None:
    w = np.array([1.0, 3.0, 0.5, 2.0, 1.0, 1.0, 1.0, 1.0])
    per = -np_logsigmoid(0.5 * H)
    got = L.dpo_loss(t(H), 0.5, weight=t(w)).item()
    assert got == pytest.approx((per * w).sum() / w.sum())


def test_margin_and_scores() -> None:
    img = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    txt = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    s = L.clip_scores(img, txt, 10.0)
    assert s.tolist() == pytest.approx([10 * 24 / 25, 0.0])
    tau = L.frozen_temperature(torch.tensor(np.log(1 / 0.07), requires_grad=True))
    assert not tau.requires_grad and tau.item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert L.frozen_temperature(torch.tensor(10.0)).item() == 100.0
    h = L.preference_margin(t([5.0]), t([2.0]), t([1.0]), t([3.0]))
    assert h.item() == pytest.approx((5 - 2) - (1 - 3))


def np_pl(scores: np.ndarray) -> float:
    return sum(np.log(np.exp(scores[k:]).sum()) - scores[k] for k in range(len(scores)))


def test_plackett_luce_matches_numpy_with_ragged_lists() -> None:
    a = np.array([2.0, 0.5, -1.0, 0.3])
    b = np.array([0.1, 1.5])
    scores = torch.tensor(np.stack([a, np.r_[b, 0.0, 0.0]]))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    got = L.plackett_luce_loss(scores, mask).item()
    assert got == pytest.approx((np_pl(a) + np_pl(b)) / 2)
    # K = 2 listwise DPO equals pairwise DPO
    s, r = torch.tensor([[1.0, 0.2]]), torch.tensor([[0.4, 0.6]])
    h = (1.0 - 0.2) - (0.4 - 0.6)
    assert L.listwise_dpo_loss(s, r, 0.7).item() == pytest.approx(-np_logsigmoid(np.array(0.7 * h)), rel=1e-6)


def test_contrastive_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    i, x = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
    tau = 7.0
    iu = i / np.linalg.norm(i, axis=1, keepdims=True)
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    logits = tau * iu @ xu.T

    def ce(lg: np.ndarray) -> float:
        return float(np.mean(np.log(np.exp(lg).sum(1)) - np.diag(lg)))

    expected = 0.5 * (ce(logits) + ce(logits.T))
    assert L.clip_contrastive_loss(t(i), t(x), tau).item() == pytest.approx(expected, rel=1e-6)


def test_dpo_gradient_pushes_preferred_score_up() -> None:
    s_w = torch.tensor([1.0, -2.0], requires_grad=True)
    s_l = torch.tensor([1.5, 0.0], requires_grad=True)
    for eps in (0.0, 0.2):
        s_w.grad = s_l.grad = None
        h = L.preference_margin(s_w, s_l, torch.tensor([0.3, 0.3]), torch.tensor([0.1, 0.1]))
        L.dpo_loss(h, 0.5, eps).backward()
        assert (s_w.grad < 0).all() and (s_l.grad > 0).all()  # descent raises s(w), lowers s(l)


def test_dpo_step_on_a_real_clip_raises_the_preferred_score() -> None:
    import vlmrm

    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    model = clip.model
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[:, :, :16] = (255, 0, 0)
    x = clip.preprocess(img)
    tau = L.frozen_temperature(model.logit_scale)
    tokens = clip.tokenizer(["a red and grey picture", "a blue square"])

    def scores() -> torch.Tensor:
        e_i = model.encode_image(x)
        e_t = model.encode_text(tokens)
        return L.clip_scores(e_i.expand(2, -1), e_t, tau)

    with torch.no_grad():
        ref = scores()
    opt = torch.optim.SGD([p for n, p in model.named_parameters() if n != "logit_scale"], lr=1e-2)
    s = scores()
    loss = L.dpo_loss(L.preference_margin(s[:1], s[1:], ref[:1], ref[1:]), beta=0.1)
    assert loss.item() == pytest.approx(np.log(2), abs=1e-5)
    loss.backward()
    opt.step()
    with torch.no_grad():
        after = scores()
    assert (after[0] - after[1]) > (ref[0] - ref[1])


def test_reinforce_value_gradient_and_baseline() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    ranks = torch.tensor([[0, 1, 2], [1, 0, 1]])
    rewards = L.candidate_rewards(ranks, "correct")
    assert rewards.tolist() == [[1, 0, 0], [0, 1, 0]]
    samples = torch.tensor([[0, 1], [1, 1]])  # row 2: identical samples → zero advantage
    out = L.reinforce_loss(logits, rewards, samples=samples)
    logp = torch.log_softmax(logits.detach(), -1).numpy()
    # row 0: rewards (1, 0) → baseline 0.5 → advantages (+0.5, -0.5); row 1: (1, 1) → (0, 0)
    expected = -np.mean([0.5 * logp[0, 0], -0.5 * logp[0, 1], 0.0, 0.0])
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    out.loss.backward()
    g = logits.grad
    assert g[0, 0] < 0 and g[0, 1] > 0  # descent raises the correct caption's logit
    assert torch.allclose(g[1], torch.zeros(3))  # no advantage, no gradient
    assert out.mean_reward.item() == pytest.approx(0.75)  # sampled rewards (1, 0, 1, 1)


def test_reinforce_kl_and_sampling() -> None:
    logits = torch.tensor([[1.0, 0.0, 0.5, 0.0]], requires_grad=True)
    ref = torch.tensor([[0.0, 0.0, 0.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    rewards = L.candidate_rewards(torch.tensor([[0, 1, 1, 0]]), "rank", mask=mask)
    assert rewards.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    g = torch.Generator().manual_seed(0)
    out = L.reinforce_loss(logits, rewards, num_samples=64, ref_logits=ref, kl_coef=0.5, mask=mask, generator=g)
    assert (out.samples < 3).all()  # padding is never sampled
    p = torch.softmax(logits.detach()[0, :3], -1).numpy()
    kl = float((p * (np.log(p) - np.log(np.full(3, 1 / 3)))).sum())
    assert out.kl.item() == pytest.approx(kl, rel=1e-6)
    assert out.loss.item() == pytest.approx(out.policy_loss.item() + 0.5 * kl, rel=1e-6)
    conf = L.candidate_rewards(torch.tensor([[0, 1]]), "confidence", probs=torch.tensor([[0.3, 0.7]]))
    assert conf[0].tolist() == pytest.approx([0.3, -0.7])


def test_bad_loss_arguments() -> None:
    with pytest.raises(ConfigError, match="beta"):
        L.dpo_loss(t([0.0]), 0.0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        L.dpo_loss(t([0.0]), 0.1, 0.7)
    with pytest.raises(ConfigError, match="REINFORCE reward"):
        L.candidate_rewards(torch.zeros(1, 2), "nope")
    with pytest.raises(ConfigError, match="ref_logits"):
        L.reinforce_loss(torch.zeros(1, 2), torch.zeros(1, 2), kl_coef=1.0)


def test_contrastive_with_shared_captions_matches_numpy() -> None:
    """Frames 0 and 1 share caption 0, frame 2 has captions 1 and 2."""
    rng = np.random.default_rng(1)
    i, x = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    pos = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]], dtype=bool)
    tau = 5.0
    iu = i / np.linalg.norm(i, axis=1, keepdims=True)
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    logits = tau * iu @ xu.T

    def soft_ce(lg: np.ndarray, p: np.ndarray) -> float:
        logp = lg - np.log(np.exp(lg).sum(1, keepdims=True))
        target = p / p.sum(1, keepdims=True)
        return float(-(target * logp).sum(1).mean())

    expected = 0.5 * (soft_ce(logits, pos) + soft_ce(logits.T, pos.T))
    got = L.clip_contrastive_loss(t(i), t(x), tau, torch.from_numpy(pos)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # The identity matrix is the plain CLIP loss.
    eye = torch.eye(3, dtype=torch.bool)
    assert L.clip_contrastive_loss(t(i), t(x), tau, eye).item() == pytest.approx(
        L.clip_contrastive_loss(t(i), t(x), tau).item(), rel=1e-6
    )
    with pytest.raises(ConfigError, match="at least one positive"):
        L.clip_contrastive_loss(t(i), t(x), tau, torch.zeros((3, 3), dtype=torch.bool))
