"""Checkpoints of a run: agent, replay buffer, and a pointer to the latest complete one.

Layout under ``<run>/checkpoints/``::

    step_000128000.zip     the SB3 agent at that step (one file per checkpoint)
    replay_buffer.pkl      the replay buffer of the latest checkpoint (off-policy only)
    latest.json            {"step", "model", "replay_buffer", "reason", "time"}

Every file is written to a temporary name and renamed (:mod:`vlmrm.runtime.atomic`),
and ``latest.json`` is written last, so a run killed while saving still resumes from the previous complete checkpoint.

The replay buffer is saved compactly: SB3 pickles the whole preallocated arrays (a 1M
transition Humanoid buffer is ~2.8 GB of mostly zeros early on); here only the filled
rows are saved and the arrays are re-allocated at full size on load.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write, atomic_write_json

LATEST = "latest.json"
REPLAY_FILE = "replay_buffer.pkl"


def save_replay_buffer(buffer: Any, path: str | os.PathLike) -> None:
    """Pickle an SB3 replay buffer, keeping only its filled rows."""
    path = Path(path)
    size = int(buffer.buffer_size)
    filled = size if buffer.full else int(buffer.pos)
    state = {}
    for key, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == size:
            state[key] = ("rows", value.shape, value.dtype, np.ascontiguousarray(value[:filled]))
        else:
            state[key] = ("value", value)
    data = {"class": type(buffer), "state": state, "filled": filled}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)

    atomic_write(path, write)


def load_replay_buffer(path: str | os.PathLike, device: Any = None) -> Any:
    """Load a buffer written by :func:`save_replay_buffer` (full-size arrays again)."""
    with open(path, "rb") as fh:
        data = pickle.load(fh)
    buffer = data["class"].__new__(data["class"])
    for key, entry in data["state"].items():
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


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(model: Any, run_dir: str | os.PathLike, *, reason: str = "periodic", replay_buffer: bool = True) -> dict:
    """Save the agent (and its replay buffer), then point ``latest.json`` at them."""
    ckpt = checkpoint_dir(run_dir)
    ckpt.mkdir(parents=True, exist_ok=True)
    step = int(model.num_timesteps)
    name = f"step_{step:09d}.zip"
    atomic_write(ckpt / name, model.save)
    replay = None
    if replay_buffer and getattr(model, "replay_buffer", None) is not None:
        save_replay_buffer(model.replay_buffer, ckpt / REPLAY_FILE)
        replay = REPLAY_FILE
    info = {"step": step, "model": name, "replay_buffer": replay, "reason": reason, "time": time.time()}
    atomic_write_json(ckpt / LATEST, info)
    return info


def latest_checkpoint(run_dir: str | os.PathLike) -> dict:
    """``latest.json`` of a run, with absolute paths; a clear error if there is none."""
    ckpt = checkpoint_dir(run_dir)
    path = ckpt / LATEST
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no checkpoint yet ({path} is missing)")
    info = json.loads(path.read_text())
    info["model_path"] = str(ckpt / info["model"])
    info["replay_buffer_path"] = str(ckpt / info["replay_buffer"]) if info.get("replay_buffer") else None
    return info


def find_checkpoint(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """``last`` (from ``latest.json``), a step number, or a file name/path of a checkpoint."""
    if which in ("last", "latest", None):
        return Path(latest_checkpoint(run_dir)["model_path"])
    ckpt = checkpoint_dir(run_dir)
    candidates = [Path(which), ckpt / which, ckpt / f"{which}.zip"]
    if str(which).isdigit():
        candidates.append(ckpt / f"step_{int(which):09d}.zip")
    for c in candidates:
        if c.is_file():
            return c
    available = sorted(p.name for p in ckpt.glob("step_*.zip"))
    raise ConfigError(f"no checkpoint {which!r} in {ckpt}; available: {', '.join(available) or 'none'}")
