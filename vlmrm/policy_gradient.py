"""REINFORCE with a per-input mean baseline: the one policy-gradient loss of the toolkit.

Tuning CLIP on rewards (``vlmrm.tune``: candidates drawn from the policy's softmax), RLCF
test-time adaptation (``vlmrm.tta``: classes or gallery items drawn from the policy) and
RLCF captioning (sampled captions, scored by length-normalised log-likelihood) all make the
same update. For one input with ``K`` sampled answers ``a_1..a_K``, their rewards
``r_1..r_K`` and log-probabilities ``log π(a_k)`` under the policy::

    A_k  = r_k - mean_j r_j                 (advantage; optionally / (std_j r_j + 1e-5))
    loss = -mean_k A_k · log π(a_k)

The loss raises the probability of answers rewarded above the input's mean and lowers it
for those below; the mean baseline makes the update zero when the reward cannot tell the
samples apart. The reward is never differentiated (it may depend on the policy, e.g. a
confidence reward). Callers only differ in how they get ``log π(a_k)`` and how they reduce
over inputs, so this module holds the maths and they hold the sampling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlmrm.errors import ConfigError

if TYPE_CHECKING:  # tensor methods only: settings read ADVANTAGES without importing torch
    import torch

#: Advantage normalisations: ``mean`` (reward minus the mean of the input's samples) and
#: ``std`` (also divided by their standard deviation).
ADVANTAGES = ("mean", "std")
_STD_EPS = 1e-5


def advantages(rewards: torch.Tensor, normalize: str = "mean") -> torch.Tensor:
    """Reward minus the mean over the last axis (the K samples of one input).

    ``normalize="std"`` also divides by the (unbiased) standard deviation plus 1e-5, which
    makes the step size independent of how far apart the reward model puts the samples.
    With a single sample there is nothing to compare against and the advantage is zero.
    """
    if normalize not in ADVANTAGES:
        raise ConfigError(f"unknown advantage {normalize!r}; choose one of {ADVANTAGES}")
    if rewards.shape[-1] < 2:
        return rewards.new_zeros(rewards.shape)
    adv = rewards - rewards.mean(-1, keepdim=True)
    if normalize == "std":
        adv = adv / (rewards.std(-1, keepdim=True) + _STD_EPS)
    return adv


def reinforce_loss(
    logp: torch.Tensor, rewards: torch.Tensor, normalize: str = "mean", per_input: bool = False
) -> torch.Tensor:
    """``-mean_k A_k · log π(a_k)`` of ``N`` inputs' ``K`` samples each.

    Args:
        logp: ``(N, K)`` log-probabilities of the sampled answers (differentiable).
        rewards: ``(N, K)`` their rewards (detached here).
        normalize: ``"mean"`` or ``"std"`` advantage (see :func:`advantages`).
        per_input: return the ``(N,)`` loss of each input (the mean over its own K) instead
            of the scalar mean over all samples.
    """
    if logp.ndim != 2 or logp.shape != rewards.shape:
        raise ConfigError(
            f"reinforce_loss expects log-probabilities and rewards of shape (N, K); got "
            f"{tuple(logp.shape)} and {tuple(rewards.shape)}"
        )
    terms = -advantages(rewards.detach().to(logp.dtype), normalize) * logp
    return terms.mean(-1) if per_input else terms.mean()
