"""Checkpoints of a tuning run: weights and trainer state as one unit, verified on resume.

Layout in ``out``::

    checkpoints/step_<N>/      one checkpoint (:mod:`vlmrm.runtime.units`): published whole
        model.safetensors      a plain open_clip state dict, the step in its metadata
        trainer_state.pt       optimiser, schedule, scaler, reference scores, history, settings
        manifest.json          sizes and SHA-256 of both
    model.safetensors          the newest weights (a hard link to the checkpoint's, or a
                               copy), loadable by ``load_clip(ARCH, pretrained=...)``

The last :data:`KEEP` checkpoints are kept. Resume takes the newest one that passes its
manifest check; a damaged one is skipped with one line naming it. Runs saved before
this layout (``trainer_state.pt`` beside ``model.safetensors``) still resume.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write
from vlmrm.runtime.units import (
    NoCheckpoint,
    list_units,
    newest_unit,
    prune_units,
    remove_unit,
    short_error,
    step_name,
    write_unit,
)
from vlmrm.tune.settings import RESUMABLE_CHANGES, TuneSettings, model_arch, upgrade_saved_settings

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"
#: How many checkpoints a tuning run keeps (the newest, and one to fall back to).
KEEP = 2


def save_checkpoint(out: Path, model: torch.nn.Module, cfg: TuneSettings, step: int, state: dict[str, Any]) -> Path:
    """Write the weights and ``state`` (plus the step and settings) as one checkpoint.

    Returns ``out/model.safetensors``, the published copy of the weights.
    """
    from safetensors.torch import save_model

    root = out / CHECKPOINTS
    drop_later_units(root, step)
    meta = {"step": str(step), "arch": model_arch(cfg.model), "loss": cfg.loss}
    full = {"step": step, "config": asdict(cfg), **state}
    writers: dict[str, Callable[[Path], Any]] = {
        MODEL_FILE: lambda p: save_model(model, os.fspath(p), metadata=meta),
        STATE_FILE: lambda p: torch.save(full, p),
    }
    name = step_name(step)
    write_unit(root, name, writers, {"step": step, "arch": meta["arch"], "loss": cfg.loss})
    published = atomic_write(out / MODEL_FILE, lambda tmp: link_or_copy(root / name / MODEL_FILE, tmp))
    (out / STATE_FILE).unlink(missing_ok=True)  # an older layout's state: superseded
    prune_units(root, KEEP)
    return published


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link of ``src`` (no second copy on disk), or a copy where links fail.

    Safe for files that are only ever replaced by a rename (:func:`atomic_write`): the
    link keeps the old contents when ``src``'s name moves on to a new file.
    """
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(src, dst)


def drop_later_units(root: Path, step: int) -> None:
    """Remove checkpoints of steps after ``step``: they belong to an earlier run that this
    one (``resume=false``) replaces."""
    for later, path in list_units(root):
        if later > step:
            remove_unit(path)


def refuse_other_settings(old: dict[str, Any], new: dict[str, Any], resumable: Collection[str],
                          out: Path, run: str = "a run") -> None:
    """Refuse to resume ``out`` when a setting outside ``resumable`` changed (one line naming each)."""
    changed = sorted(k for k, v in new.items() if k not in resumable and k in old and old[k] != v)
    if changed:
        diffs = ", ".join(f"{k}: {old[k]!r} → {new[k]!r}" for k in changed)
        raise ConfigError(
            f"{out} holds {run} with other settings ({diffs}); use another out=..., "
            "the same settings, or resume=false to start over"
        )


def _check_same_settings(cfg: TuneSettings, saved: dict[str, Any], out: Path) -> None:
    refuse_other_settings(upgrade_saved_settings(saved), asdict(cfg), RESUMABLE_CHANGES, out)


def _warn(msg: str) -> None:
    print(f"[vlmrm.tune] {msg}", file=sys.stderr, flush=True)


def _find(cfg: TuneSettings, out: Path, warn: Callable[[str], None]) -> tuple[Path, Path] | None:
    """(weights, state) files of the checkpoint to resume from, or ``None``."""
    try:
        path, _ = newest_unit(out / CHECKPOINTS, warn, required=(MODEL_FILE, STATE_FILE))
        return path / MODEL_FILE, path / STATE_FILE
    except NoCheckpoint:
        pass
    legacy = out / MODEL_FILE, out / STATE_FILE
    if all(p.is_file() for p in legacy):
        return legacy
    if cfg.resume == "true":
        raise ConfigError(f"resume=true but {out} holds no checkpoint ({CHECKPOINTS}/step_<N>/)")
    return None


def load_checkpoint(cfg: TuneSettings, out: Path, warn: Callable[[str], None] = _warn) -> dict[str, Any] | None:
    """The trainer state to resume from (``resume=auto|true``), or ``None`` to start afresh.

    Refuses a checkpoint made with other settings (those in
    :data:`~vlmrm.tune.settings.RESUMABLE_CHANGES` may change) and one whose weights and
    state disagree on the step. The state's ``"weights"`` entry is the weights file.
    """
    if cfg.resume == "false":
        return None
    found = _find(cfg, out, warn)
    if found is None:
        return None
    model_path, state_path = found
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        step = int(state["step"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem
        raise ConfigError(f"cannot read {state_path} ({short_error(exc)}); delete it or use resume=false") from None
    _check_same_settings(cfg, state.get("config", {}), out)
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(model_path), "pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - truncated or not safetensors
        raise ConfigError(f"cannot read {model_path} ({short_error(exc)}); delete it or use resume=false") from None
    if meta.get("step") != str(step):
        raise ConfigError(
            f"{model_path} (step {meta.get('step')}) and {state_path} (step "
            f"{step}) disagree; the last save was cut off — use resume=false"
        )
    state["weights"] = model_path
    return state


def load_weights(model: torch.nn.Module, path: Path, device: torch.device) -> None:
    """Load a checkpoint's weights file into ``model`` in place."""
    from safetensors.torch import load_model

    load_model(model, os.fspath(path), device=str(device))
