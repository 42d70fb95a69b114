"""The settings of RLCF captioning, free of torch: how the K captions of a step are decoded,
the steps and the final caption's beams.

:class:`CaptionSettings` is the library's setting of :class:`~vlmrm.tta.CaptionTTA` and also
what ``python -m vlmrm.tta task=caption`` builds from its command line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vlmrm.errors import ConfigError
from vlmrm.policy_gradient import ADVANTAGES
from vlmrm.tta.core.settings import EmaSettings, check_ema, check_fraction, check_k

#: Captioning: the K captions of a step come from beam search (K beams) or nucleus sampling.
DECODINGS = ("beam", "nucleus")


@dataclass
class CaptionSettings(EmaSettings):
    """RLCF captioning settings; the defaults are the paper's (COCO→Flickr30k, ViT-B/16 policy).

    COCO→NoCaps uses ``k=6`` and ``lr=3e-6``. Mixed precision follows the captioner's CLIP.
    """

    steps: int = 4
    lr: float = 2e-6
    weight_decay: float = 0.0
    k: int = 10
    decoding: str = "beam"
    top_p: float = 0.92
    final_beams: int = 5
    advantage: str = "mean"

    def validated(self) -> CaptionSettings:
        """A checked copy; raises :class:`ConfigError` on a bad value."""
        if self.decoding not in DECODINGS:
            raise ConfigError(f"unknown decoding {self.decoding!r}; choose one of {DECODINGS}")
        if self.advantage not in ADVANTAGES:
            raise ConfigError(f"unknown advantage {self.advantage!r}; choose one of {ADVANTAGES}")
        if int(self.steps) < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if float(self.weight_decay) < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        check_k(self.k)
        if not float(self.lr) > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        check_fraction(self.top_p, "top_p")
        if int(self.final_beams) < 1:
            raise ConfigError(f"final_beams must be >= 1, got {self.final_beams}")
        check_ema(self.ema, self.ema_momentum, self.ema_every, self.ema_weight)
        return replace(self, k=int(self.k), steps=int(self.steps), lr=float(self.lr))


__all__ = ["DECODINGS", "CaptionSettings"]
