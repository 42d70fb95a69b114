"""RLCF test-time adaptation for image-text retrieval.

Per query, ``steps`` (8) times: the policy ranks the whole gallery, its top-K candidates
(K = 16 image→text, 12 text→image) are rewarded by the reward CLIPs with
``2.5·max(cos(query, candidate), 0)``, and one REINFORCE step with the mean-over-K
baseline updates the query's tower — the image tower for image→text, the text tower for
text→image (AdamW, lr 1e-6). The query is then scored with the adapted tower and the
weights are reset.

The gallery side never changes during adaptation, so its embeddings (by the frozen
policy and by every reward model) are computed once (:func:`build_gallery`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel
from vlmrm.tta.core.adapter import RLCFAdapter, resolve_settings
from vlmrm.tta.core.episodic import call_stacked, stack_params, trainable_params
from vlmrm.tta.core.feedback import CLIPFeedback
from vlmrm.tta.core.rlcf import reinforce_loss, sample_answers
from vlmrm.tta.retrieval.settings import (
    DEFAULT_K,
    DIRECTIONS,
    RetrieveSettings,
    normalize_direction,
)

__all__ = [
    "DEFAULT_K",
    "DIRECTIONS",
    "Gallery",
    "RetrievalTTA",
    "RetrieveResult",
    "RetrieveSettings",
    "best_rank",
    "build_gallery",
    "normalize_direction",
    "recall_at",
]

RECALL_AT = (1, 5, 10)
_TEXT_BATCH = 256


@dataclass
class Gallery:
    """Frozen embeddings of every image and caption, by the policy and by each reward model."""

    policy_image: torch.Tensor  # (I, D)
    policy_text: torch.Tensor  # (T, D)
    reward_image: list[torch.Tensor]  # per reward model (I, D_m)
    reward_text: list[torch.Tensor]  # per reward model (T, D_m)

    def to(self, device) -> Gallery:
        return Gallery(
            self.policy_image.to(device),
            self.policy_text.to(device),
            [e.to(device) for e in self.reward_image],
            [e.to(device) for e in self.reward_text],
        )


def build_gallery(
    policy: ClipModel,
    feedback: CLIPFeedback,
    images: Sequence,
    captions: Sequence[str],
    load: Callable | None = None,
    batch_size: int = 32,
    progress: Callable[[Iterable], Iterable] | None = None,
    info=None,
) -> Gallery:
    """Embed all gallery images and captions once with the policy and the reward models.

    ``images`` are arrays ``(H, W, 3)`` uint8, or paths read with ``load``. Images are
    preprocessed one by one (sizes differ) by each model's own :meth:`ClipModel.preprocess`
    and encoded in batches of ``batch_size`` (captions in batches of 256).

    ``info`` (a :class:`vlmrm.distributed.DistInfo` of a torchrun job; a collective call):
    every rank embeds every N-th batch and the ranks exchange them, so each ends up with the
    whole gallery (on the CPU) — the same numbers as one process, since the batches are the
    same ones.
    """
    if len(images) == 0 or len(captions) == 0:
        raise ConfigError("the retrieval gallery needs at least one image and one caption")
    world, rank = (info.world_size, info.rank) if info is not None and info.enabled else (1, 0)
    models: list[ClipModel] = []  # distinct models (the policy may double as a reward model)
    for m in [policy, *feedback.models]:
        if not any(m is u for u in models):
            models.append(m)
    captions = list(captions)
    img_starts = list(range(0, len(images), batch_size))
    txt_starts = list(range(0, len(captions), _TEXT_BATCH))
    img_parts: dict[int, list[torch.Tensor]] = {}  # batch start -> one embedding per model
    mine = img_starts[rank::world]
    for start in progress(mine) if progress else mine:
        chunk = [load(x) if load is not None else x for x in images[start : start + batch_size]]
        img_parts[start] = [
            m.encode_preprocessed(torch.cat([m.preprocess(im) for im in chunk])).clone()
            for m in models
        ]
    txt_parts: dict[int, list[torch.Tensor]] = {}
    for start in txt_starts[rank::world]:
        txt_parts[start] = []
        for m in models:
            # An empty cache: a batch's embeddings depend on that batch only (not on which
            # batches this process saw before), and tens of thousands of captions are not kept.
            m.clear_text_cache()
            txt_parts[start].append(m.embed_texts(captions[start : start + _TEXT_BATCH]).clone())
    for m in models:
        m.clear_text_cache()
    if world > 1:
        import torch.distributed as dist

        local = (
            {s: [e.cpu() for e in embs] for s, embs in img_parts.items()},
            {s: [e.cpu() for e in embs] for s, embs in txt_parts.items()},
        )
        parts: list = [None] * world
        dist.all_gather_object(parts, local)
        img_parts = {s: e for p in parts for s, e in p[0].items()}
        txt_parts = {s: e for p in parts for s, e in p[1].items()}
    img = [torch.cat([img_parts[s][j] for s in img_starts]) for j in range(len(models))]
    txt = [torch.cat([txt_parts[s][j] for s in txt_starts]) for j in range(len(models))]

    def of(m: ClipModel) -> int:
        return next(j for j, u in enumerate(models) if u is m)

    return Gallery(
        img[0], txt[0], [img[of(m)] for m in feedback.models], [txt[of(m)] for m in feedback.models]
    )


@dataclass
class RetrieveResult:
    """Similarities of one query to the whole gallery, before and after adaptation."""

    scores: torch.Tensor
    zeroshot_scores: torch.Tensor
    rewards: list[float] = field(default_factory=list)


def best_rank(scores: torch.Tensor, targets: Sequence[int]) -> int:
    """0-based rank of the best-scored ground-truth item (a hit at k if rank < k)."""
    s = scores.double()
    best = s[list(targets)].max()
    return int((s > best).sum())


def recall_at(ranks: Sequence[int], ks: Sequence[int] = RECALL_AT) -> dict[str, float]:
    """Recall@k in percent from 0-based best ranks."""
    r = np.asarray(list(ranks))
    if r.size == 0:
        return {f"R@{k}": float("nan") for k in ks}
    return {f"R@{k}": float((r < k).mean() * 100.0) for k in ks}


class RetrievalTTA(RLCFAdapter):
    """Adapt the policy's query tower to each retrieval query with CLIP feedback (RLCF).

    Args:
        policy: the CLIP being adapted (fp32 weights, or ``precision="amp"`` for mixed
            precision).
        feedback: the reward CLIPs.
        gallery: frozen embeddings from :func:`build_gallery`.
        settings: :class:`RetrieveSettings`; keyword arguments override its fields.

    Query and gallery images go through each model's own ``preprocess``; load the models
    with ``resize_mode="center_crop"`` for CLIP's evaluation transform (the CLI does).
    Text→image adapts every text-tower weight (token and positional embeddings included)
    and the logit scale, as the reference does; ``params="norm"`` adapts only the
    LayerNorms.
    """

    def __init__(
        self,
        policy: ClipModel,
        feedback: CLIPFeedback,
        gallery: Gallery,
        settings: RetrieveSettings | None = None,
        **overrides,
    ) -> None:
        self.settings = resolve_settings(RetrieveSettings, settings, overrides, "retrieval")
        s = self.settings
        self._init_models(policy, feedback)
        self.gallery = gallery.to(self.device)
        n_candidates = (
            gallery.policy_text if s.direction == "i2t" else gallery.policy_image
        ).shape[0]
        if s.k > n_candidates:
            raise ConfigError(
                f"k={s.k} is larger than the gallery ({n_candidates} candidates); lower k"
            )
        if s.direction == "i2t":
            self._encode = policy.image_features
            start = trainable_params(policy.model, s.params, within="visual")
        else:
            self._encode = policy.text_features
            start = trainable_params(policy.model, s.params, exclude=("visual", "logit_bias"))
        self._init_state(start)

    def _scores(
        self, params: dict[str, torch.Tensor], query: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """Scaled similarities ``(B, N)`` of queries ``(B, ...)``, each encoded by its own adapted
        tower, to every candidate. In text→image the logit scale adapts too (as the reference)."""
        encode = self._encode
        emb = call_stacked(
            lambda p, q: encode(q, params=p), params, query.unsqueeze(1), module=self.policy.model
        )[:, 0]  # (B, D)
        if "logit_scale" in params:
            scale = params["logit_scale"].reshape(-1, 1).exp()
            return scale * emb @ candidates.t()
        return self.logit_scale * emb @ candidates.t()

    def _adapt(
        self, query: torch.Tensor, candidates: torch.Tensor, reward_rows: torch.Tensor
    ) -> list[RetrieveResult]:
        """Adapt ``B`` queries at once, each with independent weights (the same results as one
        at a time, up to float rounding); ``reward_rows`` ``(B, N)``."""
        s = self.settings
        b = query.shape[0]
        params = stack_params(self.state.start, b)
        optimizer = torch.optim.AdamW(
            list(params.values()), lr=s.lr, weight_decay=s.weight_decay, eps=1e-6
        )
        gen = torch.Generator().manual_seed(0) if s.sampling == "sample" else None
        zeroshot = None
        rewards_log: list[list[float]] = [[] for _ in range(b)]
        for _ in range(s.steps):
            logits = self._scores(params, query, candidates)  # (B, N)
            if zeroshot is None:
                zeroshot = logits.detach().float()
            actions = sample_answers(logits, s.k, s.sampling, gen)
            rewards = reward_rows.gather(-1, actions)
            loss = sum(
                reinforce_loss(logits[i : i + 1], actions[i : i + 1], rewards[i : i + 1], s.advantage)
                for i in range(b)
            )
            self._step(optimizer, loss)
            for i in range(b):
                rewards_log[i].append(float(rewards[i].mean()))
        with torch.no_grad():
            final = self._scores(params, query, candidates).float()
        if zeroshot is None:
            zeroshot = final
        for i in range(b):
            self.state.update({k: v[i] for k, v in params.items()})
        return [RetrieveResult(final[i].cpu(), zeroshot[i].cpu(), rewards_log[i]) for i in range(b)]

    def adapt_image(self, image, query_index: int) -> RetrieveResult:
        """Image→text: adapt on gallery image ``query_index`` (pixels ``image``), score all captions."""
        return self.adapt_images([image], [query_index])[0]

    def adapt_images(self, images: Sequence, query_indices: Sequence[int]) -> list[RetrieveResult]:
        """Image→text for several gallery images at once, each with independent weights."""
        if self.settings.direction != "i2t":
            raise ConfigError("adapt_image is for direction=i2t; use adapt_text for t2i")
        x = torch.cat([self.policy.preprocess(img) for img in images])  # (B, 3, S, S)
        g = self.gallery
        idx = torch.as_tensor(list(query_indices), device=g.reward_text[0].device)
        table = self.feedback.rewards([e[idx] for e in g.reward_image], g.reward_text)
        return self._adapt(x, g.policy_text, table)

    def adapt_text(self, caption: str, query_index: int) -> RetrieveResult:
        """Text→image: adapt on caption ``query_index`` (text ``caption``), score all images."""
        return self.adapt_texts([caption], [query_index])[0]

    def adapt_texts(self, captions: Sequence[str], query_indices: Sequence[int]) -> list[RetrieveResult]:
        """Text→image for several captions at once, each with independent weights."""
        if self.settings.direction != "t2i":
            raise ConfigError("adapt_text is for direction=t2i; use adapt_image for i2t")
        tokens = self.policy.tokenize(list(captions))  # (B, L)
        g = self.gallery
        idx = torch.as_tensor(list(query_indices), device=g.reward_image[0].device)
        table = self.feedback.rewards([e[idx] for e in g.reward_text], g.reward_image)
        return self._adapt(tokens, g.policy_image, table)
