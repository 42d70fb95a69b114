"""Losses for tuning CLIP as a reward model.

A CLIP's score of an image–caption pair is ``s = τ·cos(image, caption)`` with ``τ`` the
model's **frozen** temperature ``exp(logit_scale)``: freezing τ keeps scores on the
scale the reward core and the reference model use, so ``β`` means the same thing
across runs and a tuned model cannot "win" by inflating τ.

For a preferred/rejected pair, ``h = (s_θ(w) − s_θ(l)) − (s_ref(w) − s_ref(l))`` is how
much more the tuned model prefers ``w`` than the frozen reference does. The pairwise
losses (DPO, IPO, hinge) are functions of ``βh``; all are computed from ``logsigmoid``
or polynomials, never ``log(sigmoid(·))``, so they stay finite for any ``|h|``.

Every loss takes optional per-item ``weight`` and returns the weighted mean
``Σ wᵢ ℓᵢ / Σ wᵢ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vlmrm import policy_gradient
from vlmrm.errors import ConfigError
from vlmrm.tune.settings import REINFORCE_REWARDS

MAX_TEMPERATURE = 100.0  # CLIP clamps exp(logit_scale) at 100 during training.


def _reduce(loss: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return loss.mean()
    w = torch.as_tensor(weight, dtype=loss.dtype, device=loss.device)
    if w.shape != loss.shape:
        raise ConfigError(f"weight has shape {tuple(w.shape)} but the losses have {tuple(loss.shape)}")
    return (loss * w).sum() / w.sum().clamp_min(torch.finfo(loss.dtype).tiny)


def _check_beta(beta: float) -> float:
    b = float(beta)
    if not b > 0 or b != b or b == float("inf"):
        raise ConfigError(f"beta must be a positive finite number, got {beta!r}")
    return b


def frozen_temperature(logit_scale: torch.Tensor | float) -> torch.Tensor:
    """``τ = exp(logit_scale)`` detached from the graph (clamped at 100 like CLIP)."""
    ls = torch.as_tensor(logit_scale).detach().float()
    return ls.exp().clamp(max=MAX_TEMPERATURE)


def clip_scores(image_emb: torch.Tensor, text_emb: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """Row-wise scores ``τ·cos(image_emb[i], text_emb[i])`` → ``(N,)`` (inputs need not be unit)."""
    i = F.normalize(image_emb.float(), dim=-1)
    t = F.normalize(text_emb.float(), dim=-1)
    tau_t = torch.as_tensor(tau, dtype=i.dtype, device=i.device).detach()
    return tau_t * (i * t).sum(-1)


def preference_margin(
    s_chosen: torch.Tensor,
    s_rejected: torch.Tensor,
    ref_chosen: torch.Tensor | None = None,
    ref_rejected: torch.Tensor | None = None,
) -> torch.Tensor:
    """``h = Δs_θ − Δs_ref``; without reference scores, ``Δs_θ``."""
    h = s_chosen - s_rejected
    if ref_chosen is not None or ref_rejected is not None:
        if ref_chosen is None or ref_rejected is None:
            raise ConfigError("give both ref_chosen and ref_rejected, or neither")
        h = h - (ref_chosen.to(h) - ref_rejected.to(h)).detach()
    return h


def margin_in(h: torch.Tensor, tau: torch.Tensor | float, margin: str = "scaled") -> torch.Tensor:
    """A margin ``h`` of ``τ·cos`` scores in the unit ``margin`` asks for.

    ``"scaled"`` keeps ``τ·cos`` (ours); ``"cosine"`` divides by ``τ``, the raw cosine
    margin CLIP-PO scores, so that their β (≈ 10) means what it means there: with CLIP's
    τ = 100, ``β_cosine = 100·β_scaled`` gives the same loss.
    """
    if margin == "scaled":
        return h
    if margin != "cosine":
        raise ConfigError(f"unknown margin {margin!r}; choose 'scaled' or 'cosine'")
    return h / torch.as_tensor(tau, dtype=h.dtype, device=h.device).detach()


def dpo_loss(
    h: torch.Tensor, beta: float, label_smoothing: float = 0.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Sigmoid DPO with label smoothing ε: ``−(1−ε)·logσ(βh) − ε·logσ(−βh)``.

    ε = 0 is plain DPO (exactly; no ``log(0)``); ε > 0 (conservative DPO) assumes labels
    are flipped with probability ε, which bounds how far the margin is pushed.
    """
    b = _check_beta(beta)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 0.5:
        raise ConfigError(f"label_smoothing must lie in [0, 0.5], got {label_smoothing!r}")
    z = b * h
    loss = -F.logsigmoid(z)
    if eps > 0:
        loss = (1.0 - eps) * loss - eps * F.logsigmoid(-z)
    return _reduce(loss, weight)


def ipo_loss(h: torch.Tensor, beta: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """IPO: ``(h − 1/(2β))²`` — regresses the margin to a finite target instead of ∞."""
    b = _check_beta(beta)
    return _reduce((h - 1.0 / (2.0 * b)) ** 2, weight)


def hinge_loss(h: torch.Tensor, beta: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Hinge (SLiC-style): ``max(0, 1 − βh)`` — no gradient once the margin reaches 1/β."""
    b = _check_beta(beta)
    return _reduce(F.relu(1.0 - b * h), weight)


def bradley_terry_loss(
    s_chosen: torch.Tensor, s_rejected: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Bradley–Terry reward-model loss ``−logσ(s_w − s_l)``: no reference, no β."""
    return _reduce(-F.logsigmoid(s_chosen - s_rejected), weight)


def plackett_luce_loss(
    scores: torch.Tensor, mask: torch.Tensor | None = None, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Listwise Plackett–Luce negative log-likelihood of the given order.

    ``scores`` ``(B, K)`` are in preference order (best first); ``mask`` marks real
    entries of ragged lists (padding at the end). Per list:
    ``Σ_k [logsumexp(s_k, …, s_K) − s_k]``. For listwise DPO pass ``β·(s_θ − s_ref)``.
    """
    if scores.ndim != 2:
        raise ConfigError(f"scores must have shape (B, K), got {tuple(scores.shape)}")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    mask = mask.to(torch.bool)
    neg_inf = torch.finfo(scores.dtype).min
    s = scores.masked_fill(~mask, neg_inf)
    # logsumexp over the suffix s_k..s_K: flip, cumulative logsumexp, flip back.
    suffix = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
    nll = (suffix - s).masked_fill(~mask, 0.0).sum(-1)
    return _reduce(nll, weight)


def listwise_dpo_loss(
    scores: torch.Tensor,
    ref_scores: torch.Tensor,
    beta: float,
    mask: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plackett–Luce DPO: PL loss on ``β·(s_θ − s_ref)``; equals DPO for ``K = 2``."""
    b = _check_beta(beta)
    return plackett_luce_loss(b * (scores - ref_scores.to(scores).detach()), mask, weight)


def clip_contrastive_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    tau: torch.Tensor | float,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """The symmetric CLIP loss: cross-entropy over ``τ·I·Tᵀ`` rows and columns, averaged.

    Without ``positives``, row ``i`` of ``image_emb`` matches row ``i`` of ``text_emb`` and
    every other row is a negative (the CLIP loss). ``positives``, a bool ``(I, T)`` matrix,
    says which images match which captions, for batches where a caption describes many
    frames (rollout captions do): each row and column then targets a uniform
    distribution over its positives (soft-target cross-entropy, as in UniCL), so frames
    sharing a caption are never pushed apart. An identity matrix gives the CLIP loss.
    """
    if positives is None:
        if image_emb.shape[0] != text_emb.shape[0] or image_emb.shape[0] < 2:
            raise ConfigError(
                "contrastive loss needs the same number (>= 2) of images and texts, got "
                f"{image_emb.shape[0]} and {text_emb.shape[0]}"
            )
        positives = torch.eye(image_emb.shape[0], dtype=torch.bool, device=image_emb.device)
    positives = positives.to(device=image_emb.device, dtype=torch.bool)
    if positives.shape != (image_emb.shape[0], text_emb.shape[0]):
        raise ConfigError(
            f"positives must be (images, texts) = ({image_emb.shape[0]}, {text_emb.shape[0]}), "
            f"got {tuple(positives.shape)}"
        )
    if not (positives.any(1).all() and positives.any(0).all()):
        raise ConfigError("every image and every caption needs at least one positive")
    i = F.normalize(image_emb.float(), dim=-1)
    t = F.normalize(text_emb.float(), dim=-1)
    tau_t = torch.as_tensor(tau, dtype=i.dtype, device=i.device).detach()
    logits = tau_t * i @ t.T
    target = positives.to(logits.dtype)
    i2t = F.cross_entropy(logits, target / target.sum(1, keepdim=True))
    t2i = F.cross_entropy(logits.T, (target / target.sum(0, keepdim=True)).T)
    return 0.5 * (i2t + t2i)


def candidate_rewards(
    ranks: torch.Tensor,
    kind: str = "correct",
    probs: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reward of each candidate ``(B, K)`` for REINFORCE, from its rank (0 = best).

    * ``"correct"``: 1 for a best-ranked candidate, else 0;
    * ``"rank"``: ``1 − rank/max_rank`` per list (graded credit);
    * ``"confidence"``: ``+p`` for a correct candidate and ``−p`` for a wrong one, with
      ``p`` the policy's (detached) probability of it: confident mistakes cost most.
    """
    if kind not in REINFORCE_REWARDS:
        raise ConfigError(f"unknown REINFORCE reward {kind!r}; choose one of {REINFORCE_REWARDS}")
    r = ranks.float()
    if mask is None:
        mask = torch.ones_like(r, dtype=torch.bool)
    big = torch.finfo(r.dtype).max
    best = r.masked_fill(~mask, big).min(-1, keepdim=True).values
    correct = (r == best) & mask
    if kind == "correct":
        out = correct.float()
    elif kind == "rank":
        worst = r.masked_fill(~mask, -big).max(-1, keepdim=True).values
        span = (worst - best).clamp_min(1.0)
        out = 1.0 - (r - best) / span
    else:
        if probs is None:
            raise ConfigError("the 'confidence' reward needs the policy's probabilities")
        p = probs.detach().float()
        out = torch.where(correct, p, -p)
    return out.masked_fill(~mask, 0.0)


@dataclass
class ReinforceOutput:
    loss: torch.Tensor
    policy_loss: torch.Tensor
    kl: torch.Tensor
    mean_reward: torch.Tensor
    samples: torch.Tensor


def reinforce_loss(
    logits: torch.Tensor,
    rewards: torch.Tensor,
    *,
    num_samples: int = 4,
    samples: torch.Tensor | None = None,
    ref_logits: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> ReinforceOutput:
    """REINFORCE over candidate captions (or images) with a per-anchor mean baseline.

    The policy is ``π_θ(c | anchor) = softmax_c(logits)`` over the anchor's candidates,
    ``logits = τ·cos``. ``num_samples`` candidates are drawn per anchor (or given as
    ``samples`` ``(B, M)``); the advantage is the sampled reward minus the mean reward of
    that anchor's samples; the loss is ``−mean(A·log π_θ(c))``, a true policy gradient
    (the reward is not differentiated). ``kl_coef > 0`` adds the exact
    ``KL(π_θ ‖ π_ref)`` over the candidates, keeping the tuned model near the reference.
    ``rewards`` ``(B, K)`` may depend on the policy (e.g. "confidence") but is detached.
    """
    if logits.ndim != 2 or rewards.shape != logits.shape:
        raise ConfigError(
            f"logits and rewards must both be (B, K), got {tuple(logits.shape)} and {tuple(rewards.shape)}"
        )
    if mask is None:
        mask = torch.ones_like(logits, dtype=torch.bool)
    mask = mask.to(torch.bool)
    neg_inf = torch.finfo(logits.dtype).min
    logp = torch.log_softmax(logits.masked_fill(~mask, neg_inf), dim=-1)
    if samples is None:
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        probs = logp.detach().exp().masked_fill(~mask, 0.0)
        samples = torch.multinomial(probs.cpu(), num_samples, replacement=True, generator=generator)
        samples = samples.to(logits.device)
    r = rewards.detach().to(logp).gather(1, samples)
    policy_loss = policy_gradient.reinforce_loss(logp.gather(1, samples), r)
    kl = torch.zeros((), dtype=logp.dtype, device=logp.device)
    if ref_logits is not None:
        ref_logp = torch.log_softmax(ref_logits.detach().to(logp).masked_fill(~mask, neg_inf), dim=-1)
        p = logp.exp()
        kl = torch.where(mask, p * (logp - ref_logp), torch.zeros_like(p)).sum(-1).mean()
    elif kl_coef:
        raise ConfigError("kl_coef > 0 needs ref_logits (the frozen reference's scores)")
    loss = policy_loss + float(kl_coef) * kl
    return ReinforceOutput(loss=loss, policy_loss=policy_loss.detach(), kl=kl.detach(), mean_reward=r.mean().detach(), samples=samples)
