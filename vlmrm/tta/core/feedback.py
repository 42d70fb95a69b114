"""The reward side of RLCF: one or more frozen CLIPs scoring (image, text) pairs.

Each reward model embeds images through its own :meth:`ClipModel.preprocess` and image
tower, and prompts through its cached text tower — the same path the VLM-RM reward uses.
A pair's reward is ``scale · max(cos, 0)`` (``scale`` = 2.5, as in CLIPScore) — the reward
core's :class:`vlmrm.reward.CLIPScoreReward`, one per model — and with
several reward models the weighted mean of their rewards (weights normalised to sum 1;
the reference weighs ViT-L/14@336 : ViT-L/14 : RN50x64 as 10 : 5 : 3).

Rewards are only ever needed for a handful of views × all candidate answers, so callers
embed the views once and look rewards up in the resulting ``(N, C)`` table every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel
from vlmrm.reward import CLIPScoreReward


class CLIPFeedback:
    """Weighted ensemble of frozen reward CLIPs.

    Args:
        models: the reward CLIPs (loaded with :func:`vlmrm.load_clip`).
        weights: one positive weight per model (default equal); normalised to sum 1.
        scale: the reward is ``scale · max(cos, 0)``.
        batch_size: images per reward-tower call.
    """

    def __init__(
        self,
        models: ClipModel | Sequence[ClipModel],
        weights: Sequence[float] | None = None,
        scale: float = 2.5,
        batch_size: int = 64,
    ) -> None:
        if isinstance(models, ClipModel):
            models = [models]
        models = list(models)
        if not models:
            raise ConfigError("CLIPFeedback needs at least one reward model")
        if weights is None:
            weights = [1.0] * len(models)
        weights = [float(w) for w in weights]
        if len(weights) != len(models):
            raise ConfigError(
                f"got {len(weights)} reward weights for {len(models)} reward models; give one per model"
            )
        if any(not w > 0 for w in weights):
            raise ConfigError(f"reward weights must be positive, got {weights}")
        total = sum(weights)
        self.models = models
        self.weights = [w / total for w in weights]
        self.scale = float(scale)
        self.scorers = [CLIPScoreReward(m, self.scale) for m in models]
        self.batch_size = int(batch_size)

    @property
    def image_size(self) -> int:
        """The largest input size of the reward models (views are made at least this big)."""
        return max(m.image_size for m in self.models)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def embed_images(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit embeddings of ``(N, 3, H, W)`` float-[0, 1] or uint8 images, one per model."""
        out = []
        for m in self.models:
            chunks = [
                m.encode_preprocessed(m.preprocess(images[i : i + self.batch_size]))
                for i in range(0, images.shape[0], self.batch_size)
            ]
            out.append(torch.cat(chunks).clone())
        return out

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> list[torch.Tensor]:
        """Unit embeddings of prompts, one ``(T, D_m)`` tensor per model (cached per prompt)."""
        texts = list(texts)
        out = []
        for m in self.models:
            chunks = [
                m.embed_texts(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)
            ]
            out.append(torch.cat(chunks).clone())
        return out

    def rewards(self, a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
        """Reward table between embeddings ``a[m]`` ``(..., N, D)`` and ``b[m]`` ``(..., T, D)``.

        Returns the weighted ``scale · max(cos, 0)`` of every pair, ``(..., N, T)``, float32.
        """
        if len(a) != len(self.models) or len(b) != len(self.models):
            raise ConfigError("rewards() needs one embedding tensor per reward model on each side")
        table = None
        for w, scorer, ea, eb in zip(self.weights, self.scorers, a, b, strict=True):
            r = w * scorer.table(ea, eb)
            table = r if table is None else table + r
        return table
