"""Vectorised training environments and single evaluation environments.

Sub-envs are made by an :class:`EnvFactory`, a small picklable object: with
``subprocess=True`` SB3's ``SubprocVecEnv`` sends it to worker processes (``forkserver``
on Linux, preloaded with this module so that workers start without re-importing torch;
``spawn`` elsewhere; never ``fork`` after torch and a GL context exist). In the worker it

1. ignores SIGINT and SIGTERM, so that Ctrl-C in a terminal (sent to the whole process
   group) or a scheduler's SIGTERM to every process of a job is handled by the main
   process alone, which stops cleanly, saves a checkpoint and then closes the workers; a
   worker killed by the signal would break the pipe under a running step. Workers still
   exit when the main process dies: their pipe closes and SB3's worker loop ends;
2. imports ``vlmrm.envs`` before making the env: that imports torchvision (triton's LLVM)
   before MuJoCo creates an EGL context (Mesa's LLVM), the order that does not segfault,
   and registers the ``vlmrm/...`` ids in the fresh interpreter.

Frames for CLIP are rendered inside each sub-env right after ``step`` by
:class:`vlmrm.RenderFrameToInfo` (before SB3 auto-resets it), so the last frame of an
episode is that episode's; only the main process holds a CLIP model.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from vlmrm.errors import ConfigError


@dataclass(frozen=True)
class EnvFactory:
    """Makes one sub-env: ``vlmrm.envs.make_env(env_id, ...)`` with a fixed episode length."""

    env_id: str
    episode_length: int | None  # None: the env's registration
    width: int
    height: int
    camera: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self) -> gym.Env:
        if multiprocessing.parent_process() is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        import vlmrm.envs  # noqa: F401  (torchvision before MuJoCo/EGL; registers the ids)
        from vlmrm.envs import make_env

        kwargs = dict(self.kwargs)
        if self.camera is not None:
            kwargs.setdefault("camera_name", self.camera)
        return make_env(
            self.env_id,
            episode_length=self.episode_length,
            width=self.width,
            height=self.height,
            render_mode="rgb_array",
            **kwargs,
        )


def env_factory(env_cfg: Mapping[str, Any]) -> EnvFactory:
    """An :class:`EnvFactory` from the ``env`` section of the training config."""
    width, height = (int(v) for v in env_cfg["render_size"])
    kwargs = env_cfg.get("kwargs") or {}
    if hasattr(kwargs, "items"):
        from omegaconf import DictConfig, OmegaConf

        if isinstance(kwargs, DictConfig):
            kwargs = OmegaConf.to_container(kwargs, resolve=True)
    return EnvFactory(
        env_id=str(env_cfg["id"]),
        episode_length=None if env_cfg.get("episode_length") is None else int(env_cfg["episode_length"]),
        width=width,
        height=height,
        camera=env_cfg.get("camera"),
        kwargs=dict(kwargs),
    )


def check_env_factory(factory: Callable[[], gym.Env]) -> gym.Env:
    """Make one env in this process, turning construction errors into a one-line ConfigError."""
    try:
        return factory()
    except ConfigError:
        raise
    except (ValueError, TypeError, gym.error.Error) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot create the environment: {msg}") from exc


def make_training_env(
    factory: Callable[[], gym.Env],
    n_envs: int,
    *,
    seed: int | None = None,
    subprocess: bool = False,
    render_frames: bool = True,
):
    """An SB3 VecEnv of ``n_envs`` monitored sub-envs: :func:`vlmrm.make_vec_env` of ``factory``.

    ``render_frames=True`` puts each step's frame in ``info["frame"]`` (CLIP rewards);
    ground-truth training passes ``False`` and never renders. With ``subprocess=True`` the
    workers are forked from a server that has imported this module and ``vlmrm.envs``.
    """
    from vlmrm.wrappers import make_vec_env

    in_workers = subprocess and n_envs > 1  # one env: stepping it in-process is faster
    return make_vec_env(factory, n_envs, seed=seed, subprocess=in_workers, render_frames=render_frames)


def close_quietly(venv) -> None:
    """Close a VecEnv; workers that are already gone (killed from outside) are not an error."""
    try:
        venv.close()
    except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
        pass


def render_fps(env: gym.Env, default: float = 30.0) -> float:
    """Frames per second for videos of ``env``: its ``render_fps`` metadata, else ``default``."""
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return default
    return fps if fps > 0 else default
