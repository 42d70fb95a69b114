"""What classification and retrieval TTA share: settings checks, the policy, the optimiser step.

:class:`~vlmrm.tta.classify.ClassificationTTA` and :class:`~vlmrm.tta.retrieve.RetrievalTTA`
both derive from :class:`RLCFAdapter`; the maths of the objective is in :mod:`vlmrm.tta.rlcf`.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields, replace
from typing import Any, TypeVar

import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel
from vlmrm.tta.params import PARAM_GROUPS, ResetState
from vlmrm.tta.rlcf import ADVANTAGES, SAMPLING

S = TypeVar("S")


def resolve_settings(cls: type[S], settings: S | None, overrides: dict[str, Any], what: str) -> S:
    """``settings`` (default ``cls()``) with keyword ``overrides``, validated.

    An override that is no field of ``cls`` raises :class:`ConfigError` naming the known
    ones (``what``: ``"classification"``, ``"retrieval"``).
    """
    settings = settings or cls()
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {unknown}; known: {sorted(known)}")
    return replace(settings, **overrides).validated()  # type: ignore[type-var]


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


def check_k(k: Any) -> None:
    """At least 2 samples per input: the REINFORCE baseline is their mean."""
    if int(k) < 2:
        raise ConfigError(f"k must be >= 2 (the baseline is the mean over the k samples), got {k}")


def check_policy_precision(policy: ClipModel) -> None:
    """Refuse a policy loaded in fp16/bf16/int8: adaptation needs fp32 weights (or CUDA amp)."""
    if policy.precision in ("fp16", "bf16", "int8"):
        raise ConfigError(
            f"the policy is loaded in {policy.precision}; adapt fp32 weights: "
            "load_clip(..., precision='fp32') (or 'amp' on CUDA)"
        )


class RLCFAdapter:
    """Base of the TTA classes: the policy and reward models, the start weights, amp, the step.

    A subclass sets ``self.settings`` (with ``amp`` and the ``ema*`` fields), then calls
    :meth:`_init_models` and, with the weights it adapts, :meth:`_init_state`.
    """

    settings: Any

    def _init_models(self, policy: ClipModel, feedback: Any) -> None:
        self.policy = policy
        self.feedback = feedback
        self.device = policy.device
        self.amp = bool(self.settings.amp) and self.device.type == "cuda"
        self.logit_scale = float(policy.model.logit_scale.detach().exp().float())

    def _init_state(self, start: dict[str, torch.Tensor]) -> None:
        s = self.settings
        self.state = ResetState(start, s.ema, s.ema_momentum, s.ema_every, s.ema_weight)
        self._scaler = torch.amp.GradScaler("cuda", init_scale=1000.0) if self.amp else None

    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self._scaler is not None:
            self._scaler.scale(loss).backward()
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            loss.backward()
            optimizer.step()
