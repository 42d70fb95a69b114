"""Pendulum-v1 for the offline benchmarks: its state in ``info``, and a swing-up controller.

gymnasium's ``Pendulum-v1`` is not one of the package's envs: training uses it as it is
(``python -m vlmrm.train env=Pendulum-v1 goal=... baseline=...``), but a tuning dataset
(:mod:`vlmrm.tune.rollouts`) needs what the package's envs provide and Pendulum lacks:

* ``info["state"]``, the state the predicates caption (its observation is
  ``[cos θ, sin θ, θ̇]``; the angle itself reads better in a predicate file):
  :class:`PendulumState` adds ``[θ, θ̇]`` with θ wrapped to [-π, π), 0 upright and
  positive to the left in the frame, without changing dynamics or reward;
* frames of a storable size: Pendulum draws 500x500 frames (750 kB each; a dataset's
  20,000 would not fit in memory), so the wrapper resizes them to ``width`` (square)
  with the reward CLIP's own resize (:func:`vlmrm.preprocess.resize_frames`, bicubic with
  antialiasing, on uint8 frames as its fast CPU path does). At the model's input size (64 for ``vlmrm-tiny``) a dataset frame is
  what the CLIP sees of the 500x500 training frame, up to rounding to uint8;
* a scripted controller that reaches the goal: a random policy almost never holds the
  pendulum up. :func:`swing_up_action` pumps energy until the pendulum has the energy of
  the upright rest state, then a PD law holds it there (with the env's torque limit of 2
  it swings up from hanging in two to four swings). With per-episode action noise the
  rollouts visit upright, falling and hanging states alike.

:data:`ROLLOUT_ID` is the wrapped env's gymnasium id (registered by :func:`register`);
:data:`PREDICATES` the predicate file that captions its frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

#: The gymnasium id of Pendulum-v1 with ``info["state"]`` (for rollouts only).
ROLLOUT_ID = "PendulumState-v1"
#: Captions of Pendulum frames from the angle, and the goal (upright) distance.
PREDICATES = Path(__file__).with_name("pendulum_predicates.yaml")

#: Pendulum-v1's angular acceleration per unit sin θ (3g / 2l, g = 10, l = 1).
_GRAVITY_GAIN = 15.0


def wrapped_angle(theta: float | np.ndarray) -> float | np.ndarray:
    """θ in [-π, π): 0 is upright."""
    return (np.asarray(theta) + np.pi) % (2 * np.pi) - np.pi


class PendulumState(gym.Wrapper):
    """Puts ``[θ, θ̇]`` (θ wrapped, 0 upright) into ``info["state"]``; square frames of ``size``."""

    def __init__(self, env: gym.Env, size: int | None = None) -> None:
        super().__init__(env)
        self.size = size

    def render(self) -> Any:
        frame = self.env.render()
        if self.size is None or frame is None:
            return frame
        import torch

        from vlmrm.preprocess import resize_frames

        # uint8 in channels-last layout: the CLIP's fast CPU path, ~6x faster than float.
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
        x = resize_frames(x.contiguous(memory_format=torch.channels_last), self.size)
        return np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())

    def _with_state(self, info: dict) -> dict:
        theta, theta_dot = (float(v) for v in self.env.unwrapped.state)
        return {**info, "state": np.array([wrapped_angle(theta), theta_dot], dtype=np.float64)}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return obs, self._with_state(info)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._with_state(info)


def _make_state_env(
    render_mode: str | None = None, g: float = 10.0, width: int | None = None, height: int | None = None
) -> gym.Env:
    """Pendulum-v1, wrapped; ``width``/``height`` (:func:`vlmrm.envs.make_env` passes them) resize frames."""
    from gymnasium.envs.classic_control.pendulum import PendulumEnv

    if width is not None and height is not None and width != height:
        raise ValueError(f"{ROLLOUT_ID} draws square frames, got {width}x{height}")
    size = None if width is None else int(width)
    return PendulumState(PendulumEnv(render_mode=render_mode, g=g), size)


def register() -> str:
    """Register :data:`ROLLOUT_ID` (Pendulum-v1's time limit of 200 steps); returns the id."""
    if ROLLOUT_ID not in gym.registry:
        gym.register(id=ROLLOUT_ID, entry_point=_make_state_env, max_episode_steps=200)
    return ROLLOUT_ID


def swing_up_action(state: np.ndarray, space: Any) -> np.ndarray:
    """Energy pumping far from upright, a PD stabiliser near it; ``state`` is ``[θ, θ̇]``.

    The energy ``E = θ̇²/2 + 15 cos θ`` (per unit inertia) is 15 at upright rest and
    changes as ``dE/dt = 3 u θ̇``: pushing with the motion while ``E < 15`` adds energy
    and against it removes the excess. Within ``cos θ > 0.85`` (|θ| < 0.55 rad, where the
    torque limit can still hold the pendulum) ``u = -10 θ - 2 θ̇``.
    """
    theta, theta_dot = float(wrapped_angle(state[0])), float(state[1])
    limit = float(np.asarray(space.high).reshape(-1)[0])
    if np.cos(theta) > 0.85:
        u = -10.0 * theta - 2.0 * theta_dot
    else:
        energy = 0.5 * theta_dot**2 + _GRAVITY_GAIN * np.cos(theta)
        direction = 1.0 if theta_dot >= 0 else -1.0
        u = direction * 0.5 * (_GRAVITY_GAIN - energy)  # saturates at the limit until E is close
    return np.array([np.clip(u, -limit, limit)], dtype=space.dtype)


#: The controller of scripted rollout episodes (``benchmarks/offline_learning.py``).
CONTROLLER = swing_up_action
