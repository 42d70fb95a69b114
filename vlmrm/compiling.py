"""Optional ``torch.compile`` of the image tower (``load_clip(..., compile=True)``).

Why optional: on a GPU, Inductor fuses the LayerNorm/GELU/residual traffic between the
tower's matmuls, which is where fp16 ViTs lose time at large batch; on a CPU the tower is
matmul-bound and compiled fp32 runs at eager speed. Compiling costs tens of seconds per
model, so it is paid once, at load, on a dummy batch: a missing compiler or an
unsupported op then fails there with one clear line, not mid-training.

The batch dimension is compiled as dynamic, so the remainders of episode-batched
relabelling (every flush has its own size) reuse one graph instead of recompiling; the
warm-up also compiles batch 1 (its own graph: per-step rewards of one env), so no batch
size a run uses compiles mid-run.

Compiled code is cached on disk by Inductor (its FX graph cache, on by default, in
``TORCHINDUCTOR_CACHE_DIR``, default ``/tmp/torchinductor_<user>``): a second load of the
same model, precision and thread count skips code generation and C++ compilation
(ViT-B-32 int8: see docs/reward.md for cold and warm times). Point the variable at a
persistent folder to keep the cache across reboots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vlmrm.checks import COMPILE_MODES, resolve_compile  # noqa: F401 - re-exported
from vlmrm.errors import ConfigError


def compile_image_encoder(
    model: torch.nn.Module,
    mode: str,
    example: torch.Tensor,
    autocast: Callable[[], Any],
    name: str = "the model",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A compiled ``model.encode_image``, already compiled for ``example``'s shape.

    The warm-up marks the batch dimension dynamic, so the graph it compiles serves every
    later batch size of two or more; it then runs batch 1, which gets a graph of its own.

    ``example`` is a batch of model input (dtype and device of real calls); ``autocast``
    returns the autocast context real calls run under, so the warm-up traces the same graph.
    """
    compiled = torch.compile(model.encode_image, mode=mode)
    try:
        with torch.inference_mode(), autocast():
            # an inference tensor, like real calls' input: otherwise the guards differ
            # (dispatch keys) and the first real call compiles a second graph
            example = example.clone()
            torch._dynamo.maybe_mark_dynamic(example, 0)
            compiled(example)
            if example.shape[0] > 1:
                compiled(example[:1].clone())
    except Exception as exc:  # Dynamo and Inductor raise many types; all mean the same here
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[0][:300] if lines else type(exc).__name__
        where = "Triton (installed with CUDA builds of torch)" if example.device.type == "cuda" else "a C++ compiler (gcc or clang) on PATH"
        raise ConfigError(
            f"torch.compile of {name}'s image tower failed ({type(exc).__name__}: {detail}); "
            f"compiling needs {where}. Load without compile (compile=false) to run eagerly."
        ) from exc
    return compiled

