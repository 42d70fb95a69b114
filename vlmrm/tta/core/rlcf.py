"""The RLCF objective: sample K answers, reward them with CLIP, REINFORCE with a mean baseline.

Everything here is a pure function of tensors, shared by classification (answers are
class indices) and retrieval (answers are gallery indices), so the maths is tested once.

For one input with policy logits ``z`` over ``C`` answers, ``K`` sampled answers
``a_1..a_K`` and their rewards ``r_1..r_K``::

    A_k  = r_k - mean_j r_j                 (advantage; optionally / std_j r_j)
    loss = mean_k A_k · CE(z, a_k) = -mean_k A_k · log π(a_k)

Minimising the loss raises the log-probability of answers rewarded above the mean and
lowers it for those below, and the mean baseline makes the update zero when the reward
model cannot tell the samples apart. When several inputs (e.g. the confident views of one
image) are stacked, the baseline is taken per input over its own ``K`` samples, as in the
reference implementation. The loss itself is :mod:`vlmrm.policy_gradient`'s, shared with
tuning; this module holds what is particular to RLCF (views, sampling, seeds).
"""

from __future__ import annotations

import torch

from vlmrm.errors import ConfigError
from vlmrm.policy_gradient import advantages  # noqa: F401  (part of this module's face)
from vlmrm.policy_gradient import reinforce_loss as _reinforce
from vlmrm.tta.core.settings import SAMPLING


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax of ``logits`` along the last axis."""
    logp = logits.float().log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    """TPT's objective: the entropy of the views' averaged prediction.

    ``logits`` ``(..., n, C)`` of ``n`` confident views → ``(...)``; the average is taken
    of the probabilities (``logsumexp`` of the log-probabilities minus ``log n``), so a
    step makes the views agree on one confident answer (Shu et al., 2022).
    """
    logp = logits.float().log_softmax(-1)
    avg = torch.logsumexp(logp, dim=-2) - torch.log(torch.tensor(float(logits.shape[-2])))
    return -(avg.exp() * avg).sum(-1)


def n_confident(n_views: int, fraction: float) -> int:
    """How many of ``n_views`` views are kept: ``int(n · fraction)``, at least one."""
    return max(1, int(n_views * fraction))


def select_confident(logits: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ``fraction`` of views with the lowest prediction entropy.

    ``logits``: ``(..., V, C)``; returns ``(..., n)`` indices sorted by entropy. Confident
    views are more often correct, so the feedback is spent where the policy's top-K is
    informative (TPT/RLCF keep 10% of 64 views).
    """
    ent = entropy(logits.detach())
    n = n_confident(logits.shape[-2], fraction)
    return torch.argsort(ent, dim=-1, stable=True)[..., :n]


def sample_answers(
    logits: torch.Tensor,
    k: int,
    strategy: str = "topk",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``K`` answers per row of ``logits`` ``(..., C)`` → indices ``(..., K)``.

    ``"topk"`` takes the K most likely answers (the reference default: deterministic, no
    repeated answers); ``"sample"`` draws K distinct answers from the softmax.
    """
    if strategy not in SAMPLING:
        raise ConfigError(f"unknown sampling {strategy!r}; choose one of {SAMPLING}")
    c = logits.shape[-1]
    if not 1 <= k <= c:
        raise ConfigError(f"k={k} answers cannot be drawn from {c} candidates; use 2 <= k <= {c}")
    z = logits.detach().float()
    if strategy == "topk":
        return z.topk(k, dim=-1).indices
    flat = z.reshape(-1, c).softmax(-1)
    if generator is not None and generator.device != flat.device:
        flat_cpu = flat.cpu()
        idx = torch.multinomial(flat_cpu, k, replacement=False, generator=generator).to(z.device)
    else:
        idx = torch.multinomial(flat, k, replacement=False, generator=generator)
    return idx.reshape(*z.shape[:-1], k)


def reinforce_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    normalize: str = "mean",
) -> torch.Tensor:
    """REINFORCE loss of one input (or a stack of inputs sharing one update).

    Args:
        logits: ``(N, C)`` policy logits (differentiable).
        actions: ``(N, K)`` sampled answer indices.
        rewards: ``(N, K)`` rewards of those answers (no gradient).
        normalize: ``"mean"`` or ``"std"`` advantage (see :func:`vlmrm.policy_gradient.advantages`).

    Returns the scalar ``mean_{n,k} A_nk · CE(logits_n, a_nk)``.
    """
    if logits.ndim != 2 or actions.shape != rewards.shape or actions.shape[0] != logits.shape[0]:
        raise ConfigError(
            f"reinforce_loss expects logits (N, C), actions and rewards (N, K); got "
            f"{tuple(logits.shape)}, {tuple(actions.shape)}, {tuple(rewards.shape)}"
        )
    return _reinforce(log_prob(logits, actions), rewards.float(), normalize)


def sequence_reinforce_loss(nll: torch.Tensor, rewards: torch.Tensor, normalize: str = "mean") -> torch.Tensor:
    """REINFORCE loss of sampled sequences (captions), for ``B`` inputs adapted at once.

    Args:
        nll: ``(B, K)`` each sequence's length-normalised cross-entropy under the policy
            (differentiable; ``-log π`` per token, averaged over the sequence's own tokens).
        rewards: ``(B, K)`` their rewards (no gradient).
        normalize: ``"mean"`` or ``"std"`` advantage (see :func:`vlmrm.policy_gradient.advantages`).

    Returns ``Σ_b mean_k A_bk · nll_bk``: the mean over one input's K captions, summed over
    inputs so that each input's (independent) weights get exactly its own gradient.
    """
    if nll.ndim != 2 or nll.shape != rewards.shape:
        raise ConfigError(
            f"sequence_reinforce_loss expects nll and rewards (B, K); got {tuple(nll.shape)}, "
            f"{tuple(rewards.shape)}"
        )
    return _reinforce(-nll.float(), rewards.float(), normalize, per_input=True).sum()


def log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``log π(a)`` of answers ``actions`` ``(N, K)`` under ``logits`` ``(N, C)``."""
    return logits.float().log_softmax(-1).gather(-1, actions)


def seed_for(seed: int, index: int) -> int:
    """A per-sample seed, so a sample sees the same views whether run alone, batched or resumed."""
    return (int(seed) * 1_000_003 + int(index) * 7919 + 12345) % (2**63 - 1)
