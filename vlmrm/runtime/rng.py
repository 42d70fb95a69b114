"""The process's random generators as one state: what a resumed job restores.

Training checkpoints and fine-tuning checkpoints both store it, so a resumed run draws the
same numbers (minibatches, augmentations, exploration noise) as a run that never stopped.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def rng_state() -> dict[str, Any]:
    """The process's Python, NumPy and torch RNG states (CUDA's too, when in use)."""
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])  # (resumed on other GPUs: their own seeds)
