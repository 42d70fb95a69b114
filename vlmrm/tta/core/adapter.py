"""What classification and retrieval TTA share: settings, the policy, mixed precision, the step.

:class:`~vlmrm.tta.classification.adapt.ClassificationTTA` and :class:`~vlmrm.tta.retrieval.adapt.RetrievalTTA`
both derive from :class:`RLCFAdapter`; the maths of the objective is in :mod:`vlmrm.tta.core.rlcf`
and the shared settings checks in :mod:`vlmrm.tta.core.settings`.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields, replace
from typing import Any, TypeVar

import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel
from vlmrm.tta.core.episodic import ResetState

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


def check_policy_precision(policy: ClipModel) -> None:
    """Refuse a policy loaded in fp16/bf16/int8: adaptation needs fp32 weights (or ``amp``)."""
    if policy.precision in ("fp16", "bf16", "int8"):
        raise ConfigError(
            f"the policy is loaded in {policy.precision}; adapt fp32 weights: "
            "load_clip(..., precision='fp32') (or 'amp' for mixed precision)"
        )


class RLCFAdapter:
    """Base of the TTA classes: the policy and reward models, the start weights, the step.

    A subclass sets ``self.settings`` (with the ``ema*`` fields), then calls
    :meth:`_init_models` and, with the weights it adapts, :meth:`_init_state`. Mixed
    precision follows the policy: loaded with ``precision="amp"`` it adapts under
    autocast (with gradient scaling for fp16), loaded in fp32 it adapts in fp32.
    """

    settings: Any

    def _init_models(self, policy: ClipModel, feedback: Any) -> None:
        check_policy_precision(policy)
        self.policy = policy
        self.feedback = feedback
        self.device = policy.device
        self.amp_dtype = policy.autocast_dtype
        self.logit_scale = float(policy.model.logit_scale.detach().exp().float())

    def _init_state(self, start: dict[str, torch.Tensor]) -> None:
        s = self.settings
        self.state = ResetState(start, s.ema, s.ema_momentum, s.ema_every, s.ema_weight)
        fp16_cuda = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self._scaler = torch.amp.GradScaler("cuda", init_scale=1000.0) if fp16_cuda else None

    def _autocast(self):
        """Autocast for the forward passes that do not go through the policy's encoders."""
        if self.amp_dtype is not None:
            return torch.autocast(self.device.type, dtype=self.amp_dtype)
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
