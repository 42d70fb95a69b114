"""Centred and scaled CLIP rewards for training: ``scale * (r(s) - offset)``.

A CLIP reward is positive almost everywhere, so an agent is paid for every step it
survives: on an env whose episodes end at the goal (MountainCar) reaching the goal ends
the payments and becomes a loss, and on one that ends on failure (CartPole) any positive
reward teaches survival whatever its shape. Subtracting the mean reward of a reference
distribution of states (EPIC's canonical form: the same reward up to shaping, with no
bonus for being alive) leaves only what the reward says about states relative to that
reference. The reference here is what a uniformly random policy sees in the training
env, collected when training starts (``reward.center_frames`` frames, seeded by the
run's ``seed``); the offset is saved in the run's config so a resumed run keeps it.

:class:`ShiftedReward` applies the offset and scale to any reward model; both ways the
trainer delivers rewards (episode relabelling of the replay buffer and per-step scoring
in the vector env) call the reward model, so both see the same shifted reward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vlmrm.reward import score_frames
from vlmrm.rollout import iter_steps

#: Frames scored per reward call while measuring the offset (bounds memory, not the result).
CHUNK = 256


class ShiftedReward:
    """``scale * (reward_model(frames) - offset)``; other attributes are the wrapped model's.

    Returns a float32 NumPy array, one value per frame, like :func:`vlmrm.reward.score_frames`.
    """

    def __init__(self, reward_model: Callable, offset: float = 0.0, scale: float = 1.0) -> None:
        self.reward_model = reward_model
        self.offset = float(offset)
        self.scale = float(scale)

    def __call__(self, frames: Any) -> np.ndarray:
        raw = score_frames(self.reward_model, frames, dtype=np.float64)
        return (self.scale * (raw - self.offset)).astype(np.float32)

    def __getattr__(self, name: str) -> Any:
        if name == "reward_model":  # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.reward_model, name)

    def __repr__(self) -> str:
        return f"ShiftedReward({self.reward_model!r}, offset={self.offset:.6g}, scale={self.scale:g})"


def random_policy_frames(env: Any, n_frames: int, seed: int) -> Any:
    """Yield ``n_frames`` frames of a seeded uniformly random policy in ``env``.

    Frames are those of the states reached by steps (as training scores them, never the
    reset frame); episodes are reset with ``seed + k`` and actions drawn from the action
    space seeded with ``seed``.
    """
    env.action_space.seed(seed)
    count = 0
    steps = iter_steps(
        env,
        lambda obs, info: env.action_space.sample(),
        episodes=n_frames,  # at least one frame per episode: never runs out
        seed=seed,
        render=lambda episode, t, done: t > 0,
    )
    for step in steps:
        if step.frame is None:
            continue
        yield np.asarray(step.frame)
        count += 1
        if count >= n_frames:
            return


def measure_offset(reward_model: Callable, env: Any, n_frames: int, seed: int) -> float:
    """The mean reward of ``n_frames`` random-policy frames of ``env`` (the centring offset)."""
    total, count, chunk = 0.0, 0, []
    for frame in random_policy_frames(env, n_frames, seed):
        chunk.append(frame)
        if len(chunk) == CHUNK:
            total += float(score_frames(reward_model, np.stack(chunk), dtype=np.float64).sum())
            count += len(chunk)
            chunk = []
    if chunk:
        total += float(score_frames(reward_model, np.stack(chunk), dtype=np.float64).sum())
        count += len(chunk)
    return total / count


def shifted_reward(reward_cfg: Any, reward_model: Callable | None, make_env: Callable[[], Any], seed: int,
                   say: Callable[[str], None] = print) -> Callable | None:
    """The training reward of a reward section: centred and scaled as ``reward.*`` say.

    With ``reward.center`` and no saved ``reward.offset`` the offset is measured on
    ``reward.center_frames`` random-policy frames of a fresh ``make_env()`` and written
    into ``reward_cfg.offset`` (the run's saved config then keeps it for a resume).
    Returns ``reward_model`` itself when there is nothing to shift.
    """
    if reward_model is None:
        return None
    scale = float(reward_cfg.get("scale", 1.0) or 1.0)
    offset = 0.0
    if reward_cfg.get("center"):
        saved = reward_cfg.get("offset")
        if saved is None:
            n = int(reward_cfg.get("center_frames", 1000))
            env = make_env()
            try:
                offset = measure_offset(reward_model, env, n, seed)
            finally:
                env.close()
            reward_cfg.offset = offset
            say(f"reward centring: offset {offset:.6g}, the mean reward of {n} random-policy frames (seed {seed})")
        else:
            offset = float(saved)
            say(f"reward centring: offset {offset:.6g} (saved with the run)")
    if offset == 0.0 and scale == 1.0:
        return reward_model
    return ShiftedReward(reward_model, offset, scale)
