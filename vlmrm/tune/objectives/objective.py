"""The tuning objective of one batch, and of the whole eval split, for each ``loss=``.

Training units are what a batch is drawn from: preference pairs for the pairwise losses
(``dpo``, ``ipo``, ``hinge``, ``bt``), image–caption positives for ``contrastive``, and
ranked sets for ``listwise`` and ``reinforce``. Margins are taken against the reference
scores (the model as loaded), given as a function of the items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from vlmrm.tune.data.records import Item, PreferencePair, RankedSet, ranking_to_pairs
from vlmrm.tune.objectives import losses as L
from vlmrm.tune.objectives.scorer import ItemScorer, pad
from vlmrm.tune.settings import PAIRWISE, TuneSettings

Stats = dict[str, float]


class Objective:
    """``loss(units, step)`` → (differentiable loss, stats) for the configured ``loss=``."""

    def __init__(
        self,
        cfg: TuneSettings,
        scorer: ItemScorer,
        reference: Callable[[Sequence[Item]], torch.Tensor],
    ) -> None:
        self.cfg = cfg
        self.scorer = scorer
        self.reference = reference

    def loss(self, units: list[Any], step: int) -> tuple[torch.Tensor, Stats]:
        kind = self.cfg.loss
        if kind in PAIRWISE:
            return self._pairwise(units)
        if kind == "contrastive":
            return self._contrastive(units)
        if kind == "listwise":
            return self._listwise(units)
        return self._reinforce(units, step)

    def _pairwise(self, pairs: list[PreferencePair]) -> tuple[torch.Tensor, Stats]:
        cfg = self.cfg
        items = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        s = self.scorer.scores(items)
        n = len(pairs)
        s_w, s_l = s[:n], s[n:]
        w = torch.tensor([p.weight for p in pairs], dtype=torch.float32, device=s.device)
        stats: Stats = {}
        if cfg.loss == "bt":
            loss = L.bradley_terry_loss(s_w, s_l, w)
            h = (s_w - s_l).detach()
        else:
            ref = self.reference(items)
            h = L.margin_in(L.preference_margin(s_w, s_l, ref[:n], ref[n:]), self.scorer.tau, cfg.margin)
            loss = pairwise_loss(cfg, h, w)
            # DPO's implicit rewards β·(s_θ − s_ref) of the chosen and the rejected captions
            # (TensorBoard train/reward_chosen, train/reward_rejected): both falling means the
            # model is only pushing rejected captions down.
            delta = L.margin_in((s - ref.to(s)).detach(), self.scorer.tau, cfg.margin)
            stats["reward_chosen"] = float(cfg.beta * delta[:n].mean())
            stats["reward_rejected"] = float(cfg.beta * delta[n:].mean())
        acc = float(((h > 0).float()).mean())
        return loss, {"margin": float(h.detach().mean()), "pair_acc": acc, **stats}

    def _set_scores(self, sets: list[RankedSet], ref: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        items = [it for s in sets for it in s.items()]
        flat = self.scorer.scores(items)
        rflat = self.reference(items) if ref else None
        k = max(len(s) for s in sets)
        scores = flat.new_zeros((len(sets), k))
        refs = flat.new_zeros((len(sets), k)) if ref else None
        mask = torch.zeros((len(sets), k), dtype=torch.bool, device=flat.device)
        rows, cols = [], []
        for i, s in enumerate(sets):
            rows.extend([i] * len(s))
            cols.extend(range(len(s)))
            mask[i, : len(s)] = True
        r = torch.tensor(rows, device=flat.device)
        c = torch.tensor(cols, device=flat.device)
        scores = scores.index_put((r, c), flat)
        if refs is not None and rflat is not None:
            refs = refs.index_put((r, c), rflat)
        return scores, mask, refs

    def _listwise(self, sets: list[RankedSet]) -> tuple[torch.Tensor, Stats]:
        scores, mask, refs = self._set_scores(sets, ref=True)
        w = torch.tensor([s.weight for s in sets], dtype=torch.float32, device=scores.device)
        tau = self.scorer.tau
        scores_m, refs_m = L.margin_in(scores, tau, self.cfg.margin), L.margin_in(refs, tau, self.cfg.margin)  # type: ignore[arg-type]
        loss = L.listwise_dpo_loss(scores_m, refs_m, self.cfg.beta, mask, w)
        top1 = float((scores.masked_fill(~mask, -1e9).argmax(-1) == 0).float().mean())
        return loss, {"top1": top1}

    def _reinforce(self, sets: list[RankedSet], step: int) -> tuple[torch.Tensor, Stats]:
        cfg = self.cfg
        scores, mask, refs = self._set_scores(sets, ref=cfg.kl_coef > 0)
        ranks, _ = pad([list(map(float, s.ranks)) for s in sets])
        ranks = ranks.to(scores.device)
        probs = torch.softmax(scores.detach().masked_fill(~mask, -1e9), -1)
        rewards = L.candidate_rewards(ranks, cfg.reinforce_reward, probs, mask)
        # seeded by (seed, step): a resumed run samples what the uninterrupted one would
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919 * step + 1)
        out = L.reinforce_loss(
            scores, rewards, num_samples=cfg.num_samples, ref_logits=refs, kl_coef=cfg.kl_coef,
            mask=mask, generator=g,
        )
        return out.loss, {"reward": float(out.mean_reward), "kl": float(out.kl)}

    def _contrastive(self, items: list[Item]) -> tuple[torch.Tensor, Stats]:
        # Repeated frames and captions are merged, and every frame of a caption counts as
        # its positive: a duplicate must not become a false negative, nor be thrown away.
        paths = list(dict.fromkeys(p for p, _ in items))
        texts = list(dict.fromkeys(t for _, t in items))
        if len(paths) < 2 or len(texts) < 2:
            return torch.zeros((), device=self.scorer.tau.device, requires_grad=False), {"skipped": 1.0}
        pi = {p: k for k, p in enumerate(paths)}
        ti = {t: k for k, t in enumerate(texts)}
        positives = torch.zeros((len(paths), len(texts)), dtype=torch.bool)
        for p, t in items:
            positives[pi[p], ti[t]] = True
        img, txt = self.scorer.embed_each(paths, texts)
        return L.clip_contrastive_loss(img, txt, self.scorer.tau, positives), {}


def pairwise_loss(cfg: TuneSettings, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """DPO, IPO or hinge loss of margins ``h`` (``loss=bt`` needs no reference)."""
    if cfg.loss == "dpo":
        return L.dpo_loss(h, cfg.beta, cfg.label_smoothing, w)
    if cfg.loss == "ipo":
        return L.ipo_loss(h, cfg.beta, w)
    return L.hinge_loss(h, cfg.beta, w)


@torch.no_grad()
def eval_loss(
    cfg: TuneSettings, sets: Sequence[RankedSet], cos: list[np.ndarray], tau: float, ref: dict[Item, float]
) -> float:
    """The objective on the eval split from its cosines (each item encoded once)."""
    score = {it: tau * float(c) for s, cs in zip(sets, cos, strict=True) for it, c in zip(s.items(), cs, strict=True)}
    if cfg.loss == "listwise":
        vals, mask = pad([[score[it] for it in s.items()] for s in sets])
        refs, _ = pad([[ref[it] for it in s.items()] for s in sets])
        w = torch.tensor([s.weight for s in sets])
        vals, refs = L.margin_in(vals, tau, cfg.margin), L.margin_in(refs, tau, cfg.margin)
        return float(L.listwise_dpo_loss(vals, refs, cfg.beta, mask, w))
    pairs = ranking_to_pairs(sets, cfg.pairs, cfg.pair_weighting)
    s_w = torch.tensor([score[p.chosen] for p in pairs], dtype=torch.float64)
    s_l = torch.tensor([score[p.rejected] for p in pairs], dtype=torch.float64)
    w = torch.tensor([p.weight for p in pairs], dtype=torch.float64)
    if cfg.loss == "bt":
        return float(L.bradley_terry_loss(s_w, s_l, w))
    r_w = torch.tensor([ref[p.chosen] for p in pairs], dtype=torch.float64)
    r_l = torch.tensor([ref[p.rejected] for p in pairs], dtype=torch.float64)
    h = L.margin_in(L.preference_margin(s_w, s_l, r_w, r_l), tau, cfg.margin)
    return float(pairwise_loss(cfg, h, w))
