"""The settings every RLCF task shares, free of torch: how answers are drawn, which weights
adapt, and the checks each task's ``*Settings`` makes of them.

Each task keeps its own settings class beside its code (:mod:`vlmrm.tta.classification.settings`,
:mod:`vlmrm.tta.retrieval.settings`, :mod:`vlmrm.tta.captioning.settings`); what they have in
common is checked here once, so a bad value reads the same in every task. Torch-free, so the
command refuses a bad value before torch is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.policy_gradient import ADVANTAGES

#: How the K answers of one step are drawn from the policy's logits.
SAMPLING = ("topk", "sample")
#: Which tower weights adapt: every one, or only the normalisation layers' affine weights.
PARAM_GROUPS = ("all", "norm")


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


@dataclass
class EmaSettings:
    """The moving-average start weights every task can adapt from (see :class:`vlmrm.tta.core.episodic.ResetState`).

    One set of fields for classification, retrieval and captioning, so the three read and
    check them alike; the task dataclasses inherit them.
    """

    ema: bool = False
    ema_momentum: float = 0.9998
    ema_every: int = 64
    ema_weight: float = 1.0


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


__all__ = [
    "ADVANTAGES",
    "EmaSettings",
    "PARAM_GROUPS",
    "SAMPLING",
    "check_ema",
    "check_fraction",
    "check_k",
    "check_rlcf_settings",
]
