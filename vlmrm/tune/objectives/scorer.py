"""What the tuner trains through: the differentiable scorer, the trainable parameters,
the learning-rate schedule and the seeded batch order.

The scorer encodes with the reward core's own encoders (:meth:`ClipModel.image_features`,
:meth:`ClipModel.text_features`, :meth:`ClipModel.tokenize`), so a tuned model is scored
exactly as it will be used, and its precision is the loaded :class:`ClipModel`'s:
:func:`vlmrm.models.training_precision` picks the ``load_clip`` precision that gives the training
precision asked for (fp32 weights, autocast).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel
from vlmrm.tune.data.images import ImageCache
from vlmrm.tune.data.records import Item
from vlmrm.tune.objectives import losses as L
from vlmrm.tune.settings import LOCKS, TRAIN_PARAMS


def select_parameters(
    model: torch.nn.Module, lock: str = "none", train_params: str = "all"
) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze everything but the trainable parameters and return those (name, param).

    ``lock="image"``/``"text"`` freezes that tower; ``train_params="attn_in_proj"``
    trains only the attention in-projections (q/k/v) of the unlocked tower(s) — a small,
    well-conditioned subset that moves the similarity geometry without touching the
    embeddings. The temperature (``logit_scale``, ``logit_bias``) is always frozen.
    """
    if lock not in LOCKS:
        raise ConfigError(f"lock={lock!r} is not one of {LOCKS}")
    if train_params not in TRAIN_PARAMS:
        raise ConfigError(f"train_params={train_params!r} is not one of {TRAIN_PARAMS}")
    chosen = []
    for name, p in model.named_parameters():
        is_visual = name.startswith("visual.")
        train = name not in ("logit_scale", "logit_bias")
        if lock == "image" and is_visual or lock == "text" and not is_visual:
            train = False
        if train_params == "attn_in_proj" and "attn.in_proj_" not in name:
            train = False
        p.requires_grad_(train)
        if train:
            chosen.append((name, p))
    if not chosen:
        raise ConfigError(
            f"nothing to train with lock={lock} train_params={train_params} (this architecture "
            "may have no fused attention in-projections; use train_params=all)"
        )
    return chosen


def param_groups(named: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """No weight decay on gains, biases, norms and embeddings' 1-D parameters (as CLIP)."""
    decay, no_decay = [], []
    for n, p in named:
        if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def cosine_schedule(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


def batches(n_units: int, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[int, list[int]]]:
    """``(epoch, unit indices)`` from step ``start_step`` on: a seeded permutation per epoch.

    The order depends only on ``(seed, step)``, so a resumed run draws the batches the
    uninterrupted run would have drawn.
    """
    per_epoch = max(1, math.ceil(n_units / batch_size))
    step = start_step
    while True:
        epoch, k = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n_units, generator=g).tolist()
        yield epoch, perm[k * batch_size : (k + 1) * batch_size]
        step += 1


def pad(rows: list[list[float]], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged rows → ``(values, mask)`` of shape ``(len(rows), longest)``."""
    k = max(len(r) for r in rows)
    vals = torch.full((len(rows), k), fill, dtype=torch.float32)
    mask = torch.zeros((len(rows), k), dtype=torch.bool)
    for i, r in enumerate(rows):
        vals[i, : len(r)] = torch.tensor(r, dtype=torch.float32)
        mask[i, : len(r)] = True
    return vals, mask


class ItemScorer:
    """Differentiable ``τ·cos`` of ``(image path, caption)`` items for one CLIP.

    Distinct images and captions of a batch are encoded once, through the reward core's
    encoders with gradients; the image tower input is the reward core's own
    preprocessing (:meth:`ClipModel.preprocess`). A locked tower runs under ``no_grad``
    and its embeddings are cached.
    """

    def __init__(self, clip: ClipModel, images: ImageCache, tau: torch.Tensor, *, lock: str = "none") -> None:
        self.clip = clip
        self.images = images
        self.tau = tau
        self.lock = lock
        self._img_cache: dict[str, torch.Tensor] = {}
        self._txt_cache: dict[str, torch.Tensor] = {}

    def _encode_images(self, paths: list[str]) -> torch.Tensor:
        arrays = [self.images(p) for p in paths]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        out: list[torch.Tensor | None] = [None] * len(paths)
        for idx in groups.values():
            x = self.clip.preprocess(np.stack([arrays[i] for i in idx]))
            emb = self.clip.image_features(x, normalize=False)
            for k, i in enumerate(idx):
                out[i] = emb[k]
        return torch.stack(out)  # type: ignore[arg-type]

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.clip.text_features(self.clip.tokenize(texts), normalize=False)

    def _embed(self, keys: list[str], encode: Callable[[list[str]], torch.Tensor], locked: bool, cache: dict) -> torch.Tensor:
        if not locked:
            return encode(keys)
        missing = [k for k in keys if k not in cache]
        if missing:
            with torch.no_grad():
                for k, e in zip(missing, encode(missing), strict=True):
                    cache[k] = e.detach()
        return torch.stack([cache[k] for k in keys])

    def embed_each(self, paths: Sequence[str], texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of distinct images ``(P, D)`` and distinct captions ``(T, D)``."""
        img = self._embed(list(paths), self._encode_images, self.lock == "image", self._img_cache)
        txt = self._embed(list(texts), self._encode_texts, self.lock == "text", self._txt_cache)
        return img, txt

    def embed(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text embeddings ``(N, D)`` aligned with ``items`` (not normalised)."""
        paths = list(dict.fromkeys(p for p, _ in items))
        texts = list(dict.fromkeys(t for _, t in items))
        img, txt = self.embed_each(paths, texts)
        pi = {p: i for i, p in enumerate(paths)}
        ti = {t: i for i, t in enumerate(texts)}
        ii = torch.tensor([pi[p] for p, _ in items], device=img.device)
        tt = torch.tensor([ti[t] for _, t in items], device=txt.device)
        return img[ii], txt[tt]

    def scores(self, items: Sequence[Item]) -> torch.Tensor:
        """``τ·cos`` of each item ``(N,)``, with gradients through the unlocked tower(s)."""
        img, txt = self.embed(items)
        return L.clip_scores(img, txt, self.tau)
