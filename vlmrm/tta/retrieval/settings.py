"""The settings of RLCF retrieval, free of torch: the direction (which tower adapts), the
candidates per step and the steps.

:class:`RetrieveSettings` is the library's setting of :class:`~vlmrm.tta.RetrievalTTA` and
also what ``python -m vlmrm.tta task=retrieve`` builds from its command line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vlmrm.errors import ConfigError
from vlmrm.tta.core.settings import EmaSettings, check_ema, check_k, check_rlcf_settings

#: Retrieval direction: image→text adapts the image tower, text→image the text tower.
DIRECTIONS = ("i2t", "t2i")
_DIRECTION_ALIASES = {"image2text": "i2t", "text2image": "t2i", "i2t": "i2t", "t2i": "t2i"}
DEFAULT_K = {"i2t": 16, "t2i": 12}


def normalize_direction(direction: str) -> str:
    """``"i2t"``/``"image2text"`` → ``"i2t"``; ``"t2i"``/``"text2image"`` → ``"t2i"``."""
    d = _DIRECTION_ALIASES.get(str(direction).lower())
    if d is None:
        raise ConfigError(
            f"unknown retrieval direction {direction!r}; choose i2t (image→text) or t2i (text→image)"
        )
    return d


@dataclass
class RetrieveSettings(EmaSettings):
    """RLCF retrieval settings; the defaults are the paper's (Flickr30k, ViT-B/16 policy).

    Mixed precision is the policy's, as for :class:`ClassifySettings`.
    """

    direction: str = "i2t"
    steps: int = 8
    lr: float = 1e-6
    weight_decay: float = 5e-4
    k: int | None = None  # 16 (i2t) / 12 (t2i)
    sampling: str = "topk"
    advantage: str = "mean"
    params: str = "all"

    def validated(self) -> RetrieveSettings:
        """A copy with ``direction`` normalised and ``k`` filled in; raises :class:`ConfigError`."""
        d = normalize_direction(self.direction)
        check_rlcf_settings(self, "params")
        k = DEFAULT_K[d] if self.k is None else int(self.k)
        check_k(k)
        if not float(self.lr) > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        check_ema(self.ema, self.ema_momentum, self.ema_every, self.ema_weight)
        return replace(self, direction=d, k=k, lr=float(self.lr))


__all__ = ["DEFAULT_K", "DIRECTIONS", "RetrieveSettings", "normalize_direction"]
