"""Optional ``torch.compile`` of the image tower (``load_clip(..., compile=True)``).

Why optional: on a GPU, Inductor fuses the LayerNorm/GELU/residual traffic between the
tower's matmuls, which is where fp16 ViTs lose time at large batch; on a CPU the tower is
matmul-bound and compiled fp32 runs at eager speed. Compiling costs tens of seconds per
model, so it is paid once, at load, on a dummy batch: a missing compiler or an
unsupported op then fails there with one clear line, not mid-training.

The batch dimension is compiled as dynamic, so the remainders of episode-batched
relabelling (every flush has its own size) reuse one graph instead of recompiling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vlmrm.errors import ConfigError

#: ``torch.compile`` modes; ``True`` means ``"default"``.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_OFF = ("false", "off", "no", "none", "0", "")
_ON = ("true", "on", "yes", "1")


def resolve_compile(value: Any, key: str = "compile") -> str | None:
    """``False``/``None``/"false" → ``None``; ``True``/"true" → ``"default"``; a mode → itself."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _OFF:
            return None
        if text in _ON:
            return "default"
        if text in COMPILE_MODES:
            return text
    raise ConfigError(
        f"{key} must be true, false or a torch.compile mode ({', '.join(COMPILE_MODES)}), got {value!r}"
    )


def compile_image_encoder(
    model: torch.nn.Module,
    mode: str,
    example: torch.Tensor,
    autocast: Callable[[], Any],
    name: str = "the model",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A compiled ``model.encode_image``, already compiled for ``example``'s shape.

    The warm-up marks the batch dimension dynamic, so the graph it compiles serves every
    later batch size of two or more (batch 1 gets a graph of its own).

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
    except Exception as exc:  # Dynamo and Inductor raise many types; all mean the same here
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[0][:300] if lines else type(exc).__name__
        where = "Triton (installed with CUDA builds of torch)" if example.device.type == "cuda" else "a C++ compiler (gcc or clang) on PATH"
        raise ConfigError(
            f"torch.compile of {name}'s image tower failed ({type(exc).__name__}: {detail}); "
            f"compiling needs {where}. Load without compile (compile=false) to run eagerly."
        ) from exc
    return compiled

