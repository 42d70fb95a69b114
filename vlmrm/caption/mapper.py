"""The mapping network of a CLIP-prefix captioner (ClipCap's transformer mapper).

A unit CLIP image (or text) embedding ``(B, D_clip)`` becomes ``prefix_length`` embeddings
``(B, P, D_lm)`` that a frozen causal language model reads as if they were the embeddings
of the first ``P`` tokens of its input. The reference mapper (ClipCap/CapDec, used by
RLCF) is:

* ``Linear(D_clip → P · D_lm)``, reshaped to ``P`` tokens;
* concatenated with ``P`` learnable constant tokens;
* a transformer encoder (8 layers, 8 heads, width ``D_lm``, MLP ratio 2);
* the output is the ``P`` constant positions.

It is the only part of the captioner that ever trains (captioner training and test-time
adaptation alike).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn

from vlmrm.checks import checked_integers, integer
from vlmrm.errors import ConfigError


@dataclass(frozen=True)
class MapperConfig:
    """The shape of a :class:`PrefixMapper`; saved with its weights."""

    clip_dim: int = integer(512, minimum=1)
    lm_dim: int = integer(768, minimum=1)
    prefix_length: int = integer(40, minimum=1)
    layers: int = integer(8, minimum=1)
    heads: int = integer(8, minimum=1)
    mlp_ratio: float = 2.0

    def validated(self) -> MapperConfig:
        """A copy with whole-number sizes; raises :class:`ConfigError` on a shape that cannot be built."""
        config = replace(self, **checked_integers(self))
        if config.lm_dim % config.heads:
            raise ConfigError(
                f"the mapper's width {config.lm_dim} (the language model's embedding size) is not "
                f"divisible by heads={config.heads}; choose mapper heads that divide it"
            )
        return config

    def to_dict(self) -> dict:
        return asdict(self)


class PrefixMapper(nn.Module):
    """CLIP embedding → language-model prefix embeddings (see the module docstring)."""

    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.config = c = config.validated()
        self.linear = nn.Linear(c.clip_dim, c.prefix_length * c.lm_dim)
        self.prefix_const = nn.Parameter(torch.randn(c.prefix_length, c.lm_dim))
        layer = nn.TransformerEncoderLayer(
            d_model=c.lm_dim,
            nhead=c.heads,
            dim_feedforward=int(c.lm_dim * c.mlp_ratio),
            dropout=0.0,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        # No nested-tensor fast path: the mapper runs under torch.func (per-sample weights).
        self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, D_clip)`` → ``(B, P, D_lm)``."""
        c = self.config
        if embeddings.ndim != 2 or embeddings.shape[-1] != c.clip_dim:
            raise ConfigError(
                f"the mapper expects CLIP embeddings (B, {c.clip_dim}), got {tuple(embeddings.shape)}; "
                "is the captioner's CLIP the one its mapper was trained with?"
            )
        x = self.linear(embeddings.to(self.linear.weight.dtype)).view(-1, c.prefix_length, c.lm_dim)
        const = self.prefix_const.unsqueeze(0).expand(x.shape[0], -1, -1)
        out = self.transformer(torch.cat([x, const], dim=1))
        return out[:, c.prefix_length :]

    def train(self, mode: bool = True) -> PrefixMapper:
        """Always training mode: its dropout is 0, so this changes no result, and the mapper
        runs the same kernels with and without gradients and under ``torch.func`` (the
        fused inference path of attention has no autograd or vmap rule)."""
        return super().train(True)
