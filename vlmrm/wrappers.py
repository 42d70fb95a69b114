"""Applying a reward model to environments: single env, gymnasium vector env, SB3 VecEnv.

The single-env :class:`CLIPRewardWrapper` renders and scores one frame per step: correct,
simple, slow. The vector forms score every sub-env's frame in one batch. Frames must be
those of the state *reached by the step*, including the final state of an episode, which
SB3 and gymnasium's same-step autoreset would otherwise replace by the next reset state;
:class:`RenderFrameToInfo` renders inside each sub-env right after ``step`` (before any
reset) and ships the frame in ``info["frame"]``, and only the main process scores it.

Every wrapper keeps the env's own reward in ``info["original_reward"]`` and the CLIP
reward in ``info["clip_reward"]``; ``env_reward_weight`` adds the env reward back in.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.preprocess import as_frame_tensor
from vlmrm.reward import RewardModel, score_frames

FRAME_KEY = "frame"


def check_rgb_array_env(env: gym.Env | Any) -> None:
    """Raise a clear error unless ``env`` renders RGB arrays."""
    mode = getattr(env, "render_mode", None)
    if mode != "rgb_array":
        spec = getattr(env, "spec", None)
        env_id = getattr(spec, "id", None) or type(env).__name__
        raise ConfigError(
            f"the env {env_id!r} has render_mode={mode!r}, but CLIP rewards need frames; create "
            f"it with gym.make({env_id!r}, render_mode='rgb_array')"
        )


def rgb_only_metadata(env: gym.Env) -> dict[str, Any]:
    """``env.metadata`` declaring only ``rgb_array``: the one mode a frame-scoring wrapper accepts.

    Without this a wrapper would inherit modes such as ``depth_array`` that its
    constructor refuses, and gymnasium's ``check_env`` (which re-makes the env in each
    declared mode) fails.
    """
    return {**env.metadata, "render_modes": ["rgb_array"]}


def check_scorable_frame(frame: Any, where: str = "env.render()") -> np.ndarray:
    """One rendered frame that the reward core can score, checked by the core's own rule.

    A wrapper hands the frame straight to the reward model, so it accepts exactly what
    :class:`vlmrm.CLIPReward` accepts — ``(H, W, 3)`` or ``(3, H, W)``, uint8 in [0, 255]
    or float in [0, 1] — and refuses the rest with the same message
    (:func:`vlmrm.preprocess.as_frame_tensor`, the one check of frames). Only the number
    of frames is the wrapper's own rule: a render is one frame.
    """
    if getattr(frame, "ndim", None) != 3:
        raise ConfigError(
            f"{where} must return one frame, (H, W, 3) or (3, H, W), got {type(frame).__name__} "
            f"with shape {getattr(frame, 'shape', None)}"
        )
    as_frame_tensor(frame)
    return frame


def check_frame(frame: Any, where: str = "env.render()") -> np.ndarray:
    """A frame that is kept (in ``info``, a replay relabeller's store, a video) must be a
    ``(H, W, 3)`` uint8 array: what every env renders, and a quarter of float's memory."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3:
        shape = getattr(frame, "shape", None)
        raise ConfigError(
            f"{where} must return an (H, W, 3) uint8 RGB array, got {type(frame).__name__} "
            f"with shape {shape}"
        )
    if frame.dtype != np.uint8:
        raise ConfigError(f"{where} returned dtype {frame.dtype}; expected uint8 RGB")
    return frame


class RenderFrameToInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Render right after each ``step`` and put the frame in ``info["frame"]``.

    Used inside each sub-env of a vector env so that the frame of the final step of an
    episode is captured before the vector env resets that sub-env.
    """

    def __init__(self, env: gym.Env) -> None:
        check_rgb_array_env(env)
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.metadata = rgb_only_metadata(env)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info[FRAME_KEY] = check_frame(self.env.render())
        return obs, reward, terminated, truncated, info


class CLIPRewardWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace an env's reward by a CLIP reward of the rendered frame.

    Args:
        env: any env created with ``render_mode="rgb_array"``; it may render what
            :class:`vlmrm.CLIPReward` accepts: ``(H, W, 3)`` or ``(3, H, W)``, uint8 or
            float in [0, 1] (:func:`check_scorable_frame`).
        reward_model: a :class:`vlmrm.CLIPReward` or any callable frames → rewards.
        env_reward_weight: the returned reward is ``clip + env_reward_weight * env_reward``.
        frame_in_info: also return the rendered frame in ``info["frame"]`` (for logging).

    Example:
        >>> import gymnasium as gym, vlmrm
        >>> env = gym.make("CartPole-v1", render_mode="rgb_array")
        >>> clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
        >>> env = vlmrm.CLIPRewardWrapper(env, vlmrm.CLIPReward(clip, goal="pole upright"))
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(0)
        >>> sorted(k for k in info if k.endswith("reward"))
        ['clip_reward', 'original_reward']
    """

    def __init__(
        self,
        env: gym.Env,
        reward_model: RewardModel | Callable,
        env_reward_weight: float = 0.0,
        frame_in_info: bool = False,
    ) -> None:
        check_rgb_array_env(env)
        if not callable(reward_model):
            raise ConfigError(f"reward_model must be callable on frames, got {type(reward_model).__name__}")
        gym.utils.RecordConstructorArgs.__init__(
            self, reward_model=reward_model, env_reward_weight=env_reward_weight, frame_in_info=frame_in_info
        )
        gym.Wrapper.__init__(self, env)
        self.metadata = rgb_only_metadata(env)
        self.reward_model = reward_model
        self.env_reward_weight = float(env_reward_weight)
        self.frame_in_info = frame_in_info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        frame = check_scorable_frame(self.env.render())
        clip_reward = float(score_frames(self.reward_model, frame[None])[0])
        info = dict(info)
        info["original_reward"] = env_reward
        info["clip_reward"] = clip_reward
        if self.frame_in_info:
            info[FRAME_KEY] = frame
        return obs, clip_reward + self.env_reward_weight * float(env_reward), terminated, truncated, info


class CLIPRewardVectorWrapper(gym.vector.VectorWrapper):
    """Batched CLIP reward for a ``gymnasium.vector`` env: all sub-envs in one model call.

    With the default next-step autoreset, the frames are rendered after ``step`` (a
    finished sub-env is reset only on the following step, so its final frame is
    rendered), and the reset step that follows an episode end gets reward 0 like the
    env's own. With same-step autoreset, wrap each sub-env in :class:`RenderFrameToInfo`
    (its frames are then read from ``info``/``info["final_info"]``).
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        reward_model: RewardModel | Callable,
        env_reward_weight: float = 0.0,
        frame_in_info: bool = False,
    ) -> None:
        super().__init__(env)
        if getattr(env, "render_mode", None) not in ("rgb_array", None):
            check_rgb_array_env(env)
        self.reward_model = reward_model
        self.env_reward_weight = float(env_reward_weight)
        self.frame_in_info = frame_in_info
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        mode = self.env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        self._same_step = str(getattr(mode, "value", mode)).lower() == "samestep"

    def reset(self, *, seed=None, options=None):
        self._autoreset[:] = False
        return self.env.reset(seed=seed, options=options)

    def _frames(self, info: dict, done: np.ndarray) -> np.ndarray:
        if FRAME_KEY in info:
            frames = np.asarray(info[FRAME_KEY])
            if self._same_step and done.any():
                final = info.get("final_info", {})
                if FRAME_KEY not in final:
                    raise ConfigError("same-step autoreset needs RenderFrameToInfo on each sub-env")
                frames = frames.copy()
                frames[done] = np.asarray(final[FRAME_KEY])[done]
            return frames
        if self._same_step:
            raise ConfigError(
                "this vector env resets finished sub-envs in the same step, so rendering after "
                "step would show the reset state; wrap each sub-env in vlmrm.RenderFrameToInfo"
            )
        rendered = self.env.render()
        if rendered is None:
            raise ConfigError("the vector env rendered nothing; create it with render_mode='rgb_array'")
        return np.stack([check_frame(f, "sub-env render()") for f in rendered])

    def step(self, actions):
        obs, env_rewards, terminated, truncated, info = self.env.step(actions)
        done = np.logical_or(terminated, truncated)
        frames = self._frames(info, done)
        clip = score_frames(self.reward_model, frames)
        if not self._same_step:
            clip = np.where(self._autoreset, 0.0, clip).astype(np.float32)
            self._autoreset = done.copy()
        info = dict(info)
        if not self.frame_in_info:
            info.pop(FRAME_KEY, None)
            info.pop("_" + FRAME_KEY, None)
        else:
            info[FRAME_KEY] = frames
        info["original_reward"] = np.asarray(env_rewards)
        info["clip_reward"] = clip
        rewards = clip + self.env_reward_weight * np.asarray(env_rewards, dtype=np.float32)
        return obs, rewards, terminated, truncated, info


try:  # SB3 is a dependency, but keep the core importable without it.
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
except ImportError:  # pragma: no cover
    VecEnvWrapper = object  # type: ignore[misc,assignment]
    VecEnv = object  # type: ignore[misc,assignment]


class CLIPRewardVecEnvWrapper(VecEnvWrapper):
    """Batched CLIP reward for a Stable-Baselines3 ``VecEnv``.

    SB3 resets finished envs inside ``step_wait``, so the sub-envs must be wrapped in
    :class:`RenderFrameToInfo` (:func:`make_vec_env` does it). CLIP episode returns are
    reported in ``info["clip_episode"] = {"r": ..., "l": ...}`` at episode ends, next to
    the ground-truth ``info["episode"]`` written by SB3's ``Monitor``.
    """

    def __init__(
        self,
        venv: VecEnv,
        reward_model: RewardModel | Callable,
        env_reward_weight: float = 0.0,
        frame_in_info: bool = False,
    ) -> None:
        super().__init__(venv)
        self.reward_model = reward_model
        self.env_reward_weight = float(env_reward_weight)
        self.frame_in_info = frame_in_info
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self):
        self._returns[:] = 0
        self._lengths[:] = 0
        return self.venv.reset()

    def step_wait(self):
        obs, env_rewards, dones, infos = self.venv.step_wait()
        if any(FRAME_KEY not in info for info in infos):
            raise ConfigError(
                "sub-envs must put their frame in info['frame'] before SB3 resets them: build the "
                "VecEnv with vlmrm.make_vec_env(...) or wrap each env in vlmrm.RenderFrameToInfo"
            )
        frames = np.stack([info[FRAME_KEY] for info in infos])
        clip = score_frames(self.reward_model, frames)
        self._returns += clip
        self._lengths += 1
        for i, info in enumerate(infos):
            info["original_reward"] = float(env_rewards[i])
            info["clip_reward"] = float(clip[i])
            if not self.frame_in_info:
                del info[FRAME_KEY]
            if dones[i]:
                info["clip_episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i])}
                self._returns[i] = 0
                self._lengths[i] = 0
        rewards = clip + self.env_reward_weight * np.asarray(env_rewards, dtype=np.float32)
        return obs, rewards.astype(np.float32), dones, infos


def _subprocess_kwargs(env_id: str | Callable[[], gym.Env]) -> dict[str, Any]:
    """How ``SubprocVecEnv`` starts its workers: never ``fork`` after torch and GL exist.

    On Linux a fork server imports ``vlmrm.envs`` (torchvision before MuJoCo/EGL, and the
    ``vlmrm/...`` ids) and the module of the env factory once, and forks every worker
    from that clean state (no threads, no GL context): ~1 s per worker instead of ~8 s.
    Elsewhere workers are spawned. The preload has no effect once the server runs.
    """
    if not sys.platform.startswith("linux"):
        return {"start_method": "spawn"}
    preload = ["vlmrm.envs"]
    module = getattr(type(env_id), "__module__", None) if not isinstance(env_id, str) else None
    if module and module not in ("builtins", "__main__", "functools"):
        preload.insert(0, module)
    multiprocessing.set_forkserver_preload(preload)
    return {"start_method": "forkserver"}


def make_vec_env(
    env_id: str | Callable[[], gym.Env],
    n_envs: int = 1,
    *,
    seed: int | None = None,
    env_kwargs: dict | None = None,
    subprocess: bool = False,
    monitor_dir: str | None = None,
    render_frames: bool = True,
):
    """An SB3 VecEnv whose sub-envs render into ``info["frame"]`` (ready for CLIP rewards).

    Each sub-env is ``Monitor(RenderFrameToInfo(gym.make(env_id, render_mode="rgb_array")))``
    (or of ``env_id()`` for a factory), so ``info["episode"]`` holds ground-truth returns.
    ``subprocess=True`` steps and renders the envs in worker
    processes; the reward model stays in the main process. ``render_frames=False`` (for
    training on the env's own reward) never renders.

    The one construction path of vector envs: the trainer's
    :func:`vlmrm.agents.vec_env.make_training_env` calls it too.
    """
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if n_envs < 1:
        raise ConfigError(f"n_envs must be >= 1, got {n_envs}")
    kwargs = dict(env_kwargs or {})
    if isinstance(env_id, str):
        kwargs.setdefault("render_mode", "rgb_array")
    return sb3_make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=kwargs,
        wrapper_class=RenderFrameToInfo if render_frames else None,
        monitor_dir=monitor_dir,
        vec_env_cls=SubprocVecEnv if subprocess else DummyVecEnv,
        vec_env_kwargs=_subprocess_kwargs(env_id) if subprocess else None,
    )
