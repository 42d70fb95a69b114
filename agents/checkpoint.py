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
``keep`` checkpoints are kept (0: all); older ones are renamed aside, then deleted.

The replay buffer is saved compactly: SB3 pickles the whole preallocated arrays (a 1M
transition Humanoid buffer is ~2.8 GB of mostly zeros early on); here only the filled
rows are saved and the arrays are re-allocated at full size on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write, atomic_write_json, fsync_dir, fsync_file

LATEST = "latest.json"
MANIFEST = "manifest.json"
AGENT_FILE = "agent.zip"
REPLAY_FILE = "replay_buffer.pkl"
STATE_FILE = "state.pkl"
FORMAT = 2
_STEP_DIR = re.compile(r"^step_(\d+)$")
_SCRATCH = (".partial", ".replaced", ".deleting")


class NoCheckpoint(ConfigError):
    """A run folder without any complete checkpoint (killed before its first save ended)."""


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
        raise ConfigError(f"cannot read the replay buffer {path} ({_short(exc)}); the file is damaged") from None
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


def step_name(step: int) -> str:
    return f"step_{int(step):09d}"


def rng_state() -> dict[str, Any]:
    """The process's Python, NumPy and torch RNG states (what a resume restores)."""
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


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
    ckpt.mkdir(parents=True, exist_ok=True)
    _remove_scratch(ckpt)
    step = int(model.num_timesteps)
    name = step_name(step)
    partial = ckpt / f"{name}.partial"
    partial.mkdir()
    writers: dict[str, Callable[[Path], Any]] = {AGENT_FILE: model.save}
    if replay_buffer and getattr(model, "replay_buffer", None) is not None:
        writers[REPLAY_FILE] = lambda p: _write_replay_buffer(model.replay_buffer, p)
    state = {"step": step, "episode_num": int(getattr(model, "_episode_num", 0)), "rng": rng_state(), **(extra_state or {})}
    writers[STATE_FILE] = lambda p: p.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    files = {}
    for file, write in writers.items():
        write(partial / file)
        fsync_file(partial / file)
        files[file] = {"size": (partial / file).stat().st_size, "sha256": _sha256(partial / file)}
    manifest = {"format": FORMAT, "step": step, "reason": reason, "time": time.time(), "files": files}
    atomic_write_json(partial / MANIFEST, manifest)
    fsync_dir(partial)
    _publish(partial, ckpt / name)
    atomic_write_json(ckpt / LATEST, {"step": step, "checkpoint": name})
    if keep > 0:
        prune_checkpoints(ckpt, keep)
    return {**manifest, "checkpoint": name}


def _publish(partial: Path, final: Path) -> None:
    """Rename ``partial`` to ``final``; an existing checkpoint of that step is replaced."""
    if final.exists():
        aside = final.with_name(final.name + ".replaced")
        os.replace(final, aside)
        os.replace(partial, final)
        fsync_dir(final.parent)
        shutil.rmtree(aside)
    else:
        os.replace(partial, final)
    fsync_dir(final.parent)


def _remove_scratch(ckpt: Path) -> None:
    """Remove what an interrupted save or prune left behind (never a published checkpoint)."""
    for path in ckpt.iterdir():
        if path.is_dir() and path.suffix in (".partial", ".deleting"):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and path.suffix == ".replaced":
            if (ckpt / path.stem).is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:  # killed between the two renames: the replaced one is still complete
                os.replace(path, ckpt / path.stem)


def _step_dirs(ckpt: Path) -> list[tuple[int, Path]]:
    """Published checkpoint folders, newest first (a ``.replaced`` one stands in for its step)."""
    found: dict[int, Path] = {}
    if not ckpt.is_dir():
        return []
    for path in ckpt.iterdir():
        base = path.name.removesuffix(".replaced")
        match = _STEP_DIR.match(base)
        if match and path.is_dir() and (path.name == base or int(match.group(1)) not in found):
            found[int(match.group(1))] = path
    return sorted(found.items(), reverse=True)


def prune_checkpoints(ckpt: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (renamed aside first, then removed)."""
    removed = []
    for _, path in _step_dirs(ckpt)[keep:]:
        aside = path.with_name(path.name + ".deleting")
        os.replace(path, aside)
        shutil.rmtree(aside)
        removed.append(path)
    return removed


def read_run_config(run_dir: str | os.PathLike, key: str = "resume") -> Any:
    """A run's ``config.yaml`` (an OmegaConf node); one clear line if missing or damaged."""
    from omegaconf import DictConfig, OmegaConf

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{key}={run_dir}: no config.yaml there; pass a run folder made by python -m vlmrm.train")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - truncated or hand-edited YAML
        raise ConfigError(f"{key}={run_dir}: config.yaml is damaged ({_short(exc)}); restore it") from None
    if not isinstance(cfg, DictConfig) or "env" not in cfg or "agent" not in cfg:
        raise ConfigError(f"{key}={run_dir}: config.yaml is not a training run's config (no env/agent sections)")
    return cfg


# -- finding and verifying ---------------------------------------------------------------


@dataclass
class Checkpoint:
    """A verified checkpoint folder."""

    path: Path
    step: int
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".replaced")

    @property
    def agent_path(self) -> Path:
        return self.path / AGENT_FILE

    @property
    def replay_buffer_path(self) -> Path | None:
        return self.path / REPLAY_FILE if REPLAY_FILE in self.manifest["files"] else None

    def state(self) -> dict[str, Any]:
        """``state.pkl``: RNG states, counters, relabeller state."""
        path = self.path / STATE_FILE
        try:
            return pickle.loads(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - verified by the manifest, so rare
            raise ConfigError(f"cannot read {path} ({_short(exc)}); the checkpoint is damaged") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def verify_checkpoint(path: Path) -> Checkpoint:
    """Read ``manifest.json`` of a checkpoint folder and check every file's size and checksum.

    Raises :class:`ConfigError` saying what is wrong (missing, truncated, altered).
    """
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        step, files = int(manifest["step"]), dict(manifest["files"])
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: {MANIFEST} is missing") from None
    except Exception as exc:  # noqa: BLE001 - truncated JSON, wrong types: damaged either way
        raise ConfigError(f"{path.name}: {MANIFEST} is damaged ({_short(exc)})") from None
    if AGENT_FILE not in files:
        raise ConfigError(f"{path.name}: {MANIFEST} lists no {AGENT_FILE}")
    for file, meta in files.items():
        fpath = path / file
        if not fpath.is_file():
            raise ConfigError(f"{path.name}: {file} is missing")
        size = fpath.stat().st_size
        if size != meta.get("size"):
            raise ConfigError(f"{path.name}: {file} has {size} bytes, the manifest says {meta.get('size')}")
        if _sha256(fpath) != meta.get("sha256"):
            raise ConfigError(f"{path.name}: {file} does not match its checksum (altered or damaged)")
    return Checkpoint(path, step, manifest)


def _warn(msg: str) -> None:
    print(f"[vlmrm] {msg}", file=sys.stderr, flush=True)


def latest_checkpoint(run_dir: str | os.PathLike, warn: Callable[[str], None] = _warn) -> Checkpoint:
    """The newest checkpoint of a run that passes :func:`verify_checkpoint`.

    Damaged ones are skipped with one ``warn`` line each; a clear error if none is left.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"{run_dir} is not a run folder (it does not exist or is a file)")
    ckpt = checkpoint_dir(run)
    found = _step_dirs(ckpt)
    if not found:
        raise NoCheckpoint(f"{run_dir} has no checkpoint yet (nothing in {ckpt})")
    problems = []
    for _, path in found:
        try:
            chosen = verify_checkpoint(path)
        except ConfigError as exc:
            problems.append(str(exc))
            warn(f"skipping damaged checkpoint {exc}")
            continue
        return chosen
    raise ConfigError(
        f"{run_dir}: every checkpoint is damaged ({'; '.join(problems)}); "
        "restore the files, or delete checkpoints/ to start the run over"
    )


def find_checkpoint(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """The agent file of ``last`` (newest complete), a step number, or a checkpoint folder/file.

    A checkpoint folder is verified first; a plain ``.zip`` path is taken as given.
    """
    which = "last" if which in ("last", "latest", None) else str(which)
    if which == "last":
        return latest_checkpoint(run_dir).agent_path
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
    available = ", ".join(p.name for _, p in reversed(_step_dirs(ckpt))) or "none"
    raise ConfigError(f"no checkpoint {which!r} in {ckpt}; available: {available}")
