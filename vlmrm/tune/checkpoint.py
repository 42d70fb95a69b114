"""Checkpoints of a tuning run: the weights and the trainer state, written atomically.

A checkpoint is two files in ``out``: ``model.safetensors`` (a plain open_clip state
dict, loadable by ``load_clip(ARCH, pretrained=...)``, with the step in its metadata) and
``trainer_state.pt`` (optimiser, schedule, scaler, reference scores, history and the
settings). Each is published by one atomic rename; on resume the two steps must agree,
so a save cut off between the files is detected instead of silently mixed.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write
from vlmrm.tune.settings import RESUMABLE_CHANGES, TuneConfig, model_arch, upgrade_saved_settings

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"


def save_checkpoint(out: Path, model: torch.nn.Module, cfg: TuneConfig, step: int, state: dict[str, Any]) -> Path:
    """Write the weights and ``state`` (plus the step and settings); returns the weights' path."""
    from safetensors.torch import save_model

    meta = {"step": str(step), "arch": model_arch(cfg.model), "loss": cfg.loss}
    model_path = atomic_write(out / MODEL_FILE, lambda tmp: save_model(model, os.fspath(tmp), metadata=meta))
    full = {"step": step, "config": asdict(cfg), **state}
    atomic_write(out / STATE_FILE, lambda tmp: torch.save(full, tmp))
    return model_path


def _check_same_settings(cfg: TuneConfig, saved: dict[str, Any], out: Path) -> None:
    old = upgrade_saved_settings(saved)
    new = asdict(cfg)
    changed = sorted(k for k, v in new.items() if k not in RESUMABLE_CHANGES and k in old and old[k] != v)
    if changed:
        diffs = ", ".join(f"{k}: {old[k]!r} → {new[k]!r}" for k in changed)
        raise ConfigError(
            f"{out} holds a run with other settings ({diffs}); use another out=..., "
            "the same settings, or resume=false to start over"
        )


def load_checkpoint(cfg: TuneConfig, out: Path) -> dict[str, Any] | None:
    """The trainer state to resume from (``resume=auto|true``), or ``None`` to start afresh.

    Refuses a checkpoint made with other settings (those in
    :data:`~vlmrm.tune.settings.RESUMABLE_CHANGES` may change) and one whose weights and
    state disagree on the step.
    """
    model_path, state_path = out / MODEL_FILE, out / STATE_FILE
    exists = state_path.is_file() and model_path.is_file()
    if cfg.resume == "false" or (cfg.resume == "auto" and not exists):
        return None
    if not exists:
        raise ConfigError(f"resume=true but {out} holds no checkpoint ({STATE_FILE} + {MODEL_FILE})")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem
        raise ConfigError(f"cannot read {state_path}: {exc}; delete it or use resume=false") from None
    _check_same_settings(cfg, state.get("config", {}), out)
    from safetensors import safe_open

    with safe_open(os.fspath(model_path), "pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("step") != str(state["step"]):
        raise ConfigError(
            f"{model_path} (step {meta.get('step')}) and {state_path} (step "
            f"{state['step']}) disagree; the last save was cut off — use resume=false"
        )
    return state


def load_weights(model: torch.nn.Module, out: Path, device: torch.device) -> None:
    """Load the checkpoint's weights into ``model`` in place."""
    from safetensors.torch import load_model

    load_model(model, os.fspath(out / MODEL_FILE), device=str(device))
