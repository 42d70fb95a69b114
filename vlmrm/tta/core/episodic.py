"""Per-sample parameters: adapt copies of a tower's weights, never the loaded model itself.

Episodic test-time adaptation starts every test input from the same weights. Rather than
training the module in place and restoring it afterwards, the adapted parameters are
*copies* stacked along a leading batch axis ``(B, ...)`` and handed to the model's own
encoders (``ClipModel.image_features(x, params=...)``, which plug them in with
``torch.func.functional_call``), ``vmap``-ed over the batch when ``B > 1``. So:

* the loaded policy is never modified — a reset is just making fresh copies;
* ``B`` test inputs adapt at once with independent weights and independent AdamW states
  (AdamW is elementwise, so one optimiser over stacked tensors is ``B`` optimisers);
* the optimiser state is created fresh per batch, which is the reference's "reload the
  initial optimiser state".

:class:`ResetState` holds the weights each sample starts from, optionally moved towards an
exponential moving average of adapted weights (the reference's "momentum update").
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.func import vmap

from vlmrm.errors import ConfigError
from vlmrm.tta.core.settings import PARAM_GROUPS, check_ema

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def trainable_params(
    module: nn.Module, which: str = "all", *, within: str = "", exclude: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Name → detached float32 copy of the parameters to adapt.

    Names are ``module.named_parameters()`` names, so the copies plug straight into
    :meth:`ClipModel.image_features` / :meth:`~ClipModel.text_features` as ``params=``.
    ``within``: only parameters under that submodule (``"visual"``); ``exclude``: drop
    names starting with any of these. ``which="all"``: every such parameter; ``"norm"``:
    only the affine weights/biases of normalisation layers (few parameters, a common,
    more conservative test-time-adaptation choice).
    """
    if which not in PARAM_GROUPS:
        raise ConfigError(f"unknown parameter group {which!r}; choose one of {PARAM_GROUPS}")
    if which == "all":
        named = dict(module.named_parameters())
    else:
        named = {}
        for mname, m in module.named_modules():
            if isinstance(m, _NORMS):
                for pname, p in m.named_parameters(recurse=False):
                    named[f"{mname}.{pname}" if mname else pname] = p
    prefix = f"{within}." if within else ""
    out = {
        k: v.detach().float().clone()
        for k, v in named.items()
        if k.startswith(prefix) and not (exclude and k.startswith(exclude))
    }
    if not out:
        where = f"{type(module).__name__}.{within}" if within else type(module).__name__
        raise ConfigError(f"no parameters to adapt in {where} for group {which!r}")
    return out


def stack_params(start: dict[str, torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
    """``batch`` independent trainable copies of ``start``, stacked as leaf tensors ``(batch, ...)``."""
    return {
        k: v.detach().unsqueeze(0).repeat(batch, *([1] * v.ndim)).requires_grad_(True)
        for k, v in start.items()
    }


@contextlib.contextmanager
def _vmap_friendly(module: nn.Module) -> Iterator[None]:
    """Keep attention off its fused inference fast path, which has no vmap/autograd rule.

    ``nn.MultiheadAttention`` takes the fast path in eval mode; its dropout is 0 in CLIP, so
    train mode changes nothing else. Other modules (batch norm) stay in eval mode.
    """
    mhas = [m for m in module.modules() if isinstance(m, nn.MultiheadAttention) and not m.training]
    for m in mhas:
        m.training = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*performance drop.*")
            yield
    finally:
        for m in mhas:
            m.training = False


def call_stacked(
    fn: Callable[..., torch.Tensor],
    params: dict[str, torch.Tensor],
    *inputs: torch.Tensor,
    module: nn.Module,
) -> torch.Tensor:
    """``fn(params_b, *inputs_b)`` once per sample ``b``, with ``params[k][b]`` and ``inputs[i][b]``.

    ``fn`` is one of the model's own encoders with replacement weights, e.g.
    ``lambda p, x: clip.image_features(x, params=p)``; ``module`` is the model it runs
    (its attention is kept off the fused path, see :func:`_vmap_friendly`). Returns the
    outputs stacked along a leading batch axis (``vmap`` over the batch when it has more
    than one sample).
    """
    batch = next(iter(params.values())).shape[0]
    with _vmap_friendly(module):
        if batch == 1:
            out = fn({k: v[0] for k, v in params.items()}, *(x[0] for x in inputs))
            return out.unsqueeze(0)
        return vmap(fn, randomness="different")(params, *inputs)


class ResetState:
    """The weights each test sample starts from.

    Without EMA this is the frozen policy's weights forever (episodic TTA). With EMA
    (``momentum`` in (0, 1)), after every sample ``ema ← m·ema + (1-m)·adapted``, and every
    ``every`` samples the start becomes ``(1-w)·original + w·ema`` — slowly accumulating
    what adaptation found across the test stream while each sample still starts clean.
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        ema: bool = False,
        momentum: float = 0.9998,
        every: int = 64,
        weight: float = 1.0,
    ) -> None:
        check_ema(ema, momentum, every, weight)
        self.original = {k: v.detach().clone() for k, v in params.items()}
        self.start = {k: v.clone() for k, v in self.original.items()}
        self.ema_on = bool(ema)
        self.momentum, self.every, self.weight = float(momentum), int(every), float(weight)
        self.ema = {k: v.clone() for k, v in self.original.items()} if ema else None
        self.count = 0

    @torch.no_grad()
    def update(self, adapted: dict[str, torch.Tensor]) -> None:
        """Record one sample's adapted weights (no-op without EMA)."""
        if not self.ema_on:
            return
        for k, v in adapted.items():
            self.ema[k].mul_(self.momentum).add_(
                v.detach().to(self.ema[k]), alpha=1.0 - self.momentum
            )
        self.count += 1
        if self.count >= self.every:
            self.count = 0
            for k in self.start:
                self.start[k] = (1.0 - self.weight) * self.original[k] + self.weight * self.ema[k]

    def reset(self) -> None:
        """Forget everything learned across samples (back to the frozen policy)."""
        self.start = {k: v.clone() for k, v in self.original.items()}
        if self.ema_on:
            self.ema = {k: v.clone() for k, v in self.original.items()}
        self.count = 0
