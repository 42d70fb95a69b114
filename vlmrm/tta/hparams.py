"""The method's hyper-parameters, free of torch: what RLCF adapts, how, and how much.

:class:`ClassifySettings` and :class:`RetrieveSettings` are the library's settings
(:class:`~vlmrm.tta.ClassificationTTA`, :class:`~vlmrm.tta.RetrievalTTA`) and also what
``python -m vlmrm.tta`` builds from its command line. They live apart from the torch code
so the command can refuse a bad value before torch is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.policy_gradient import ADVANTAGES

#: How the K answers of one step are drawn from the policy's logits.
SAMPLING = ("topk", "sample")
#: The REINFORCE baseline: reward minus the mean over K, optionally divided by the std.
#: Which tower weights adapt: every one, or only the normalisation layers' affine weights.
PARAM_GROUPS = ("all", "norm")
#: Classification adapts the prompt context or the image tower.
MODES = ("prompt", "image")
#: What a classification step minimises: the RLCF policy gradient, or TPT's marginal entropy
#: over the confident views (the paper's test-time baseline; no reward model involved).
OBJECTIVES = ("rlcf", "tpt")
DEFAULT_LR = {"prompt": 7e-3, "image": 1e-5}
#: Retrieval direction: image→text adapts the image tower, text→image the text tower.
DIRECTIONS = ("i2t", "t2i")
_DIRECTION_ALIASES = {"image2text": "i2t", "text2image": "t2i", "i2t": "i2t", "t2i": "t2i"}
DEFAULT_K = {"i2t": 16, "t2i": 12}
#: Captioning: the K captions of a step come from beam search (K beams) or nucleus sampling.
DECODINGS = ("beam", "nucleus")


def normalize_direction(direction: str) -> str:
    """``"i2t"``/``"image2text"`` → ``"i2t"``; ``"t2i"``/``"text2image"`` → ``"t2i"``."""
    d = _DIRECTION_ALIASES.get(str(direction).lower())
    if d is None:
        raise ConfigError(
            f"unknown retrieval direction {direction!r}; choose i2t (image→text) or t2i (text→image)"
        )
    return d


def check_fraction(value: float, name: str) -> float:
    """A fraction in (0, 1]."""
    v = float(value)
    if not (0.0 < v <= 1.0) or math.isnan(v):
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
    return v


def check_rlcf_settings(s: Any, group_key: str) -> None:
    """The checks both settings make, in this order: ``sampling``, ``advantage``, the group of
    adapted weights (the field ``group_key``) and ``steps``."""
    if s.sampling not in SAMPLING:
        raise ConfigError(f"unknown sampling {s.sampling!r}; choose one of {SAMPLING}")
    if s.advantage not in ADVANTAGES:
        raise ConfigError(f"unknown advantage {s.advantage!r}; choose one of {ADVANTAGES}")
    group = getattr(s, group_key)
    if group not in PARAM_GROUPS:
        raise ConfigError(f"unknown {group_key} {group!r}; choose one of {PARAM_GROUPS}")
    if int(s.steps) < 0:
        raise ConfigError(f"steps must be >= 0, got {s.steps}")
    if float(s.weight_decay) < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {s.weight_decay}")


def check_k(k: Any) -> None:
    """At least 2 samples per input: the REINFORCE baseline is their mean."""
    if int(k) < 2:
        raise ConfigError(f"k must be >= 2 (the baseline is the mean over the k samples), got {k}")


def check_ema(ema: bool, momentum: float, every: int, weight: float) -> None:
    """The moving-average start weights' settings (checked only when ``ema`` is on)."""
    if not ema:
        return
    if not 0.0 < float(momentum) < 1.0:
        raise ConfigError(f"ema_momentum must be in (0, 1), got {momentum}")
    if int(every) < 1:
        raise ConfigError(f"ema_every must be a positive integer, got {every}")
    if not 0.0 <= float(weight) <= 1.0:
        raise ConfigError(f"ema_weight must be in [0, 1], got {weight}")


@dataclass
class ClassifySettings:
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
    ema: bool = False
    ema_momentum: float = 0.9998
    ema_every: int = 64
    ema_weight: float = 1.0
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


@dataclass
class RetrieveSettings:
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
    ema: bool = False
    ema_momentum: float = 0.9998
    ema_every: int = 64
    ema_weight: float = 1.0

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


@dataclass
class CaptionSettings:
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
    ema: bool = False
    ema_momentum: float = 0.9998
    ema_every: int = 64
    ema_weight: float = 1.0

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


__all__ = [
    "ADVANTAGES",
    "DECODINGS",
    "CaptionSettings",
    "DEFAULT_K",
    "DEFAULT_LR",
    "DIRECTIONS",
    "MODES",
    "OBJECTIVES",
    "PARAM_GROUPS",
    "SAMPLING",
    "ClassifySettings",
    "RetrieveSettings",
    "check_fraction",
    "check_k",
    "check_rlcf_settings",
    "normalize_direction",
]
