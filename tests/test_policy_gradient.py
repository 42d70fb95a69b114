"""The one REINFORCE loss: values against a NumPy reference, and tune and TTA make the same update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmrm.errors import ConfigError
from vlmrm.policy_gradient import advantages, reinforce_loss
from vlmrm.tta.core.rlcf import reinforce_loss as tta_reinforce_loss
from vlmrm.tune.objectives.losses import reinforce_loss as tune_reinforce_loss


def _reference(logp: np.ndarray, rewards: np.ndarray, normalize: str) -> np.ndarray:
    adv = rewards - rewards.mean(axis=1, keepdims=True)
    if normalize == "std":
        adv = adv / (rewards.std(axis=1, ddof=1, keepdims=True) + 1e-5)
    return (-adv * logp).mean(axis=1)


@pytest.mark.parametrize("normalize", ["mean", "std"])
def test_the_loss_is_minus_the_mean_advantage_times_log_probability(normalize):
    gen = np.random.default_rng(0)
    logp = np.log(gen.uniform(0.05, 0.9, (3, 4)))
    rewards = gen.normal(size=(3, 4))
    want = _reference(logp, rewards, normalize)
    lp = torch.tensor(logp, requires_grad=True)
    got = reinforce_loss(lp, torch.tensor(rewards), normalize, per_input=True)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)
    total = reinforce_loss(lp, torch.tensor(rewards), normalize)
    np.testing.assert_allclose(total.item(), want.mean(), rtol=1e-12)
    total.backward()  # the gradient is -A/(N*K): the reward is not differentiated
    adv = advantages(torch.tensor(rewards), normalize).numpy()
    np.testing.assert_allclose(lp.grad.numpy(), -adv / logp.size, rtol=1e-12)


def test_one_sample_has_no_advantage_and_bad_shapes_are_one_line():
    assert reinforce_loss(torch.tensor([[-0.3]]), torch.tensor([[5.0]])).item() == 0.0
    with pytest.raises(ConfigError, match=r"\(N, K\)"):
        reinforce_loss(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="unknown advantage"):
        advantages(torch.zeros(1, 2), "median")


def test_tuning_and_tta_give_the_same_loss_and_gradient_for_the_same_samples():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, generator=gen)
    rewards = torch.rand(3, 5, generator=gen)
    samples = torch.tensor([[0, 2, 4], [1, 1, 3], [4, 0, 2]])
    a = logits.clone().requires_grad_(True)
    tune = tune_reinforce_loss(a, rewards, samples=samples).loss
    tune.backward()
    b = logits.clone().requires_grad_(True)
    tta = tta_reinforce_loss(b, samples, rewards.gather(1, samples))
    tta.backward()
    assert tune.item() == pytest.approx(tta.item(), rel=1e-6)
    torch.testing.assert_close(a.grad, b.grad)
