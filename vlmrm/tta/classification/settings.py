"""The settings of RLCF classification, free of torch: what adapts (the prompt context or the
image tower), how many views and steps, and the TPT baseline's objective.

:class:`ClassifySettings` is the library's setting of :class:`~vlmrm.tta.ClassificationTTA`
and also what ``python -m vlmrm.tta task=classify`` builds from its command line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vlmrm.errors import ConfigError
from vlmrm.tta.core.settings import (
    EmaSettings,
    check_ema,
    check_fraction,
    check_k,
    check_rlcf_settings,
)

#: Classification adapts the prompt context or the image tower.
MODES = ("prompt", "image")
#: What a classification step minimises: the RLCF policy gradient, or TPT's marginal entropy
#: over the confident views (the paper's test-time baseline; no reward model involved).
OBJECTIVES = ("rlcf", "tpt")
DEFAULT_LR = {"prompt": 7e-3, "image": 1e-5}


@dataclass
class ClassifySettings(EmaSettings):
    """RLCF classification settings; the defaults are the paper's (ViT-B/16 policy).

    Mixed precision is the policy's: load it with ``precision="amp"`` to adapt under
    autocast, ``"fp32"`` for full precision.
    """

    mode: str = "prompt"
    steps: int = 3
    lr: float | None = None  # 7e-3 (prompt) / 1e-5 (image)
    weight_decay: float = 5e-4
    k: int = 3
    views: int = 64
    select: float = 0.1
    augmix: bool = False
    sampling: str = "topk"
    advantage: str = "mean"
    n_ctx: int = 4
    ctx_init: str = "a photo of a"
    template: str = "a photo of a {}."
    image_params: str = "all"
    objective: str = "rlcf"

    def validated(self) -> ClassifySettings:
        """A copy with ``lr`` filled in; raises :class:`ConfigError` on a bad value."""
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; choose one of {OBJECTIVES}")
        check_rlcf_settings(self, "image_params")
        check_k(self.k)
        if int(self.views) < 1:
            raise ConfigError(f"views must be >= 1, got {self.views}")
        check_fraction(self.select, "select")
        if "{}" not in self.template:
            raise ConfigError(f"template must contain '{{}}' for the class name, got {self.template!r}")
        lr = DEFAULT_LR[self.mode] if self.lr is None else float(self.lr)
        if not lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        check_ema(self.ema, self.ema_momentum, self.ema_every, self.ema_weight)
        return replace(self, lr=lr)


__all__ = ["DEFAULT_LR", "MODES", "OBJECTIVES", "ClassifySettings"]
