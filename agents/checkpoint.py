"""Checkpoints of a run: each one a single unit, published whole or not at all.

Layout under ``<run>/checkpoints/``::

    step_000128000/            one checkpoint (everything of that step)
        agent.zip              the SB3 agent (``model.save``)
        replay_buffer.pkl      its replay buffer (off-policy agents)
        state.pkl              RNG states, counters, relabeller state
        manifest.json          step, reason, time, and each file's size and SHA-256
    latest.json                {"step", "checkpoint"}: a pointer to the newest one

A save writes every file into ``step_<N>.partial/``, fsyncs each file and the folder,
then publishes the folder by one ``os.replace`` and only then moves ``latest.json``. A run
killed at any point of a save therefore holds either the previous checkpoints only (a
stray ``.partial`` folder is removed by the next save) or the new one complete: the agent
of one step is never resumed with the replay buffer of another.

Resume verifies the manifest (sizes and checksums) of the newest checkpoint; one that
fails is skipped with one line naming it, and the newest complete one is used. The last
``keep`` checkpoints are kept (0: all); older ones are renamed aside, then deleted. The
folder mechanics are :mod:`vlmrm.runtime.units` (shared with the tuning checkpoints).
Runs saved before checkpoints were folders (``step_<N>.zip`` and ``replay_buffer.pkl``
beside ``latest.json``) still resume.

The replay buffer is saved compactly: SB3 pickles the whole preallocated arrays (a 1M
transition Humanoid buffer is ~2.8 GB of mostly zeros early on); here only the filled
rows are saved and the arrays are re-allocated at full size on load.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write, atomic_write_json
from vlmrm.runtime.rng import restore_rng_state, rng_state  # noqa: F401 (re-exported)
from vlmrm.runtime.units import (
    NoCheckpoint,
    list_units,
    newest_unit,
    prune_units,
    short_error,
    step_name,
    verify_unit,
    write_unit,
)

LATEST = "latest.json"
AGENT_FILE = "agent.zip"
REPLAY_FILE = "replay_buffer.pkl"
STATE_FILE = "state.pkl"
__all__ = [
    "AGENT_FILE", "REPLAY_FILE", "STATE_FILE", "Checkpoint", "NoCheckpoint", "find_checkpoint",
    "latest_checkpoint", "load_replay_buffer", "read_run_config", "restore_rng_state", "save_checkpoint",
    "save_replay_buffer", "verify_checkpoint",
]


# -- replay buffer -----------------------------------------------------------------------


def save_replay_buffer(buffer: Any, path: str | os.PathLike) -> None:
    """Pickle an SB3 replay buffer, keeping only its filled rows (atomically)."""
    atomic_write(path, lambda tmp: _write_replay_buffer(buffer, tmp))


def _write_replay_buffer(buffer: Any, path: Path) -> None:
    size = int(buffer.buffer_size)
    filled = size if buffer.full else int(buffer.pos)
    state = {}
    for key, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == size:
            state[key] = ("rows", value.shape, value.dtype, np.ascontiguousarray(value[:filled]))
        else:
            state[key] = ("value", value)
    data = {"class": type(buffer), "state": state, "filled": filled}
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_replay_buffer(path: str | os.PathLike, device: Any = None) -> Any:
    """Load a buffer written by :func:`save_replay_buffer` (full-size arrays again).

    A missing, truncated or foreign file is a :class:`ConfigError` naming it.
    """
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
        buffer = data["class"].__new__(data["class"])
        entries = data["state"].items()
    except FileNotFoundError:
        raise ConfigError(f"replay buffer {path} is missing") from None
    except Exception as exc:  # noqa: BLE001 - truncated, empty or not ours: the same problem
        raise ConfigError(f"cannot read the replay buffer {path} ({short_error(exc)}); the file is damaged") from None
    for key, entry in entries:
        if entry[0] == "rows":
            _, shape, dtype, rows = entry
            full = np.zeros(shape, dtype=dtype)
            full[: rows.shape[0]] = rows
            setattr(buffer, key, full)
        else:
            setattr(buffer, key, entry[1])
    if device is not None:
        buffer.device = device
    return buffer


# -- saving ------------------------------------------------------------------------------


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(
    model: Any,
    run_dir: str | os.PathLike,
    *,
    reason: str = "periodic",
    replay_buffer: bool = True,
    extra_state: dict[str, Any] | None = None,
    keep: int = 0,
) -> dict:
    """Save the agent, its replay buffer and ``state.pkl`` as one checkpoint folder.

    ``extra_state`` (e.g. the relabeller's) goes into ``state.pkl`` with the RNG states
    and counters. ``keep`` > 0 deletes all but the newest ``keep`` checkpoints afterwards.
    Returns the manifest (with ``checkpoint``, the folder's name).
    """
    ckpt = checkpoint_dir(run_dir)
    step = int(model.num_timesteps)
    name = step_name(step)
    writers: dict[str, Callable[[Path], Any]] = {AGENT_FILE: model.save}
    if replay_buffer and getattr(model, "replay_buffer", None) is not None:
        writers[REPLAY_FILE] = lambda p: _write_replay_buffer(model.replay_buffer, p)
    state = {"step": step, "episode_num": int(getattr(model, "_episode_num", 0)), "rng": rng_state(), **(extra_state or {})}
    writers[STATE_FILE] = lambda p: p.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    manifest = write_unit(ckpt, name, writers, {"step": step, "reason": reason})
    atomic_write_json(ckpt / LATEST, {"step": step, "checkpoint": name})
    if keep > 0:
        prune_units(ckpt, keep)
    return {**manifest, "checkpoint": name}


def read_run_config(run_dir: str | os.PathLike, key: str = "resume") -> Any:
    """A run's ``config.yaml`` (an OmegaConf node); one clear line if missing or damaged."""
    from omegaconf import DictConfig, OmegaConf

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{key}={run_dir}: no config.yaml there; pass a run folder made by python -m vlmrm.train")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - truncated or hand-edited YAML
        raise ConfigError(f"{key}={run_dir}: config.yaml is damaged ({short_error(exc)}); restore it") from None
    # Sections and keys every trainer-written config has, spread over the file: a file cut
    # short (a copy interrupted, a full disk) loses some of them and is refused, instead of
    # silently falling back to defaults (another goal, another step count).
    missing = [k for k in ("env", "agent", "reward", "goal", "total_steps", "eval")
               if not isinstance(cfg, DictConfig) or k not in cfg]
    if missing:
        raise ConfigError(
            f"{key}={run_dir}: config.yaml is not a whole training run's config (no {'/'.join(missing)}); "
            "restore it"
        )
    return cfg


# -- finding and verifying ---------------------------------------------------------------


@dataclass
class Checkpoint:
    """A verified checkpoint: its folder, step, manifest and files."""

    path: Path
    step: int
    manifest: dict[str, Any]
    legacy: bool = False  # a run saved before checkpoints were folders (step_<N>.zip)

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".replaced") if not self.legacy else self.manifest["model"]

    @property
    def agent_path(self) -> Path:
        return self.path / (self.manifest["model"] if self.legacy else AGENT_FILE)

    @property
    def replay_buffer_path(self) -> Path | None:
        name = self.manifest.get("replay_buffer") if self.legacy else REPLAY_FILE
        return self.path / name if name and name in self.manifest["files"] else None

    def state(self) -> dict[str, Any]:
        """``state.pkl``: RNG states, counters, relabeller state (empty for a legacy checkpoint)."""
        path = self.path / STATE_FILE
        if self.legacy:
            return {}
        try:
            return pickle.loads(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - verified by the manifest, so rare
            raise ConfigError(f"cannot read {path} ({short_error(exc)}); the checkpoint is damaged") from None


def _legacy_checkpoint(ckpt: Path) -> Checkpoint | None:
    """``latest.json`` of a run saved before checkpoints were folders (agent zip + buffer beside it)."""
    import json

    try:
        info = json.loads((ckpt / LATEST).read_text(encoding="utf-8"))
        model, buffer = info["model"], info.get("replay_buffer")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    files = {name: {} for name in (model, buffer) if name and (ckpt / name).is_file()}
    if model not in files or (buffer and buffer not in files):
        raise ConfigError(f"{ckpt / LATEST} names {model}{' and ' + buffer if buffer else ''}, but they are missing")
    return Checkpoint(ckpt, int(info["step"]), {**info, "files": files}, legacy=True)


def verify_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint folder whose files all match its manifest (else a :class:`ConfigError`)."""
    manifest = verify_unit(path, required=(AGENT_FILE,))
    return Checkpoint(path, int(manifest["step"]), manifest)


def _warn(msg: str) -> None:
    print(f"[vlmrm] {msg}", file=sys.stderr, flush=True)


def latest_checkpoint(run_dir: str | os.PathLike, warn: Callable[[str], None] = _warn) -> Checkpoint:
    """The newest checkpoint of a run that passes :func:`verify_checkpoint`.

    Damaged ones are skipped with one ``warn`` line each; :class:`NoCheckpoint` if there
    is none; a :class:`ConfigError` if every one is damaged.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"{run_dir} is not a run folder (it does not exist or is a file)")
    try:
        path, manifest = newest_unit(checkpoint_dir(run), warn, required=(AGENT_FILE,))
    except NoCheckpoint:
        legacy = _legacy_checkpoint(checkpoint_dir(run))
        if legacy is None:
            raise
        return legacy
    return Checkpoint(path, int(manifest["step"]), manifest)


def find_checkpoint(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """The agent file of ``last`` (newest complete), ``best``, a step number, or a checkpoint folder/file.

    A checkpoint folder is verified first; a plain ``.zip`` path is taken as given.
    """
    which = "last" if which in ("last", "latest", None) else str(which)
    if which == "last":
        return latest_checkpoint(run_dir).agent_path
    if which == "best":  # checkpoints/best.zip, checked against best.json
        from vlmrm.agents.best import best_agent_path

        return best_agent_path(run_dir)
    ckpt = checkpoint_dir(run_dir)
    dirs = [Path(which), ckpt / which]
    if which.isdigit():
        dirs.append(ckpt / step_name(int(which)))
    for d in dirs:
        if d.is_dir():
            return verify_checkpoint(d).agent_path
    for f in (Path(which), ckpt / which):
        if f.is_file():
            return f
    available = ", ".join(p.name for _, p in reversed(list_units(ckpt))) or "none"
    raise ConfigError(f"no checkpoint {which!r} in {ckpt}; available: {available}")
