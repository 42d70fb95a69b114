"""Checkpoints of ``python -m vlmrm.tune.finetune``: the whole trainer as one unit, so a rerun
of the same command continues a run stopped by Ctrl-C, SIGTERM or SIGKILL.

Layout in ``out``::

    checkpoints/step_<N>/      one checkpoint (:mod:`vlmrm.runtime.units`): published whole
        model.safetensors      the weights being trained, after global step N
        best.safetensors       the best-on-val weights so far (a hard link when it can be)
        trainer_state.pt       optimiser, position (stage, epoch, batch), RNG states, the
                               per-step and per-epoch histories, best val score, settings
        manifest.json          sizes and SHA-256 of the three
    model.safetensors          the best-on-val weights, for ``load_clip(ARCH, pretrained=...)``

Why the best weights are part of the unit: ``model.safetensors`` is replaced when an
epoch beats the best val score, and that happens before the epoch's checkpoint. A kill
between the two would otherwise leave a best file newer than the checkpoint it resumes
from; resume puts the unit's own best weights back, so weights, best score and history
always agree. The last :data:`KEEP` checkpoints are kept; resume takes the newest one that
passes its manifest check (a damaged one is skipped with one line).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write
from vlmrm.runtime.units import (
    NoCheckpoint,
    newest_unit,
    prune_units,
    short_error,
    step_name,
    write_unit,
)
from vlmrm.tune.checkpoint import drop_later_units, link_or_copy, refuse_other_settings
from vlmrm.tune.finetune.settings import RESUMABLE_CHANGES, FinetuneSettings

CHECKPOINTS = "checkpoints"
WEIGHTS = "model.safetensors"
BEST = "best.safetensors"
STATE = "trainer_state.pt"
#: How many checkpoints a fine-tuning run keeps (the newest, and one to fall back to).
KEEP = 2


def write_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """A plain open_clip state dict as safetensors (what ``load_clip(pretrained=...)`` reads)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, os.fspath(path))


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, state: dict[str, Any]) -> Path:
    """Publish the trainer at global ``step`` as ``out/checkpoints/step_<N>/``; returns that folder.

    ``out/model.safetensors`` (the best weights so far) must exist. Checkpoints of later
    steps belong to an earlier run that this one replaces (``resume=false``) and go first.
    """
    root = out / CHECKPOINTS
    drop_later_units(root, step)
    full = {"step": int(step), **state}
    writers: dict[str, Callable[[Path], Any]] = {
        WEIGHTS: lambda p: write_weights(p, model.state_dict()),
        BEST: lambda p: link_or_copy(out / WEIGHTS, p),
        STATE: lambda p: torch.save(full, p),
    }
    name = step_name(step)
    write_unit(root, name, writers, {"step": int(step)})
    prune_units(root, KEEP)
    return root / name


def _warn(msg: str) -> None:
    print(f"[vlmrm.tune.finetune] {msg}", file=sys.stderr, flush=True)


def load_checkpoint(
    cfg: FinetuneSettings, out: Path, warn: Callable[[str], None] = _warn
) -> tuple[Path, dict[str, Any]] | None:
    """``(checkpoint folder, trainer state)`` to resume from, or ``None`` to start afresh.

    ``resume=false`` starts afresh; ``auto`` resumes when ``out`` holds a checkpoint;
    ``true`` requires one. A checkpoint made with other settings is refused (those in
    :data:`~vlmrm.tune.finetune.settings.RESUMABLE_CHANGES` may change).
    """
    if cfg.resume == "false":
        return None
    try:
        path, _ = newest_unit(out / CHECKPOINTS, warn, required=(WEIGHTS, BEST, STATE))
    except NoCheckpoint:
        if cfg.resume == "true":
            raise ConfigError(f"resume=true but {out} holds no checkpoint ({CHECKPOINTS}/step_<N>/)") from None
        return None
    try:
        state = torch.load(path / STATE, map_location="cpu", weights_only=False)
        int(state["step"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem
        raise ConfigError(
            f"cannot read {path / STATE} ({short_error(exc)}); delete {path} or use resume=false"
        ) from None
    refuse_other_settings(state.get("settings", {}), asdict(cfg), RESUMABLE_CHANGES, out, "a fine-tuning run")
    return path, state


def restore_best(out: Path, unit: Path) -> None:
    """Put the checkpoint's best weights back as ``out/model.safetensors``."""
    atomic_write(out / WEIGHTS, lambda tmp: link_or_copy(unit / BEST, tmp))
