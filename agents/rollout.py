"""Deterministic evaluation episodes and their videos.

Used during training (periodic evaluation videos) and by ``python -m vlmrm.evaluate``
(:mod:`vlmrm.agents.evaluation`). The ground-truth return is the env's own reward; the CLIP return is the reward model
applied to the same frames after each step (what training optimises). "Success" is the
env's ``info["success"]`` at the last step of an episode, where the env defines it
(CartPole: pole upright, MountainCar: car at the flag; Humanoid has none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from vlmrm.reward import score_frames
from vlmrm.rollout import iter_steps


@dataclass
class EpisodeResult:
    """One episode: returns, length, success (``None`` if the env does not define it)."""

    gt_return: float
    length: int
    clip_return: float | None = None
    success: bool | None = None
    success_fraction: float | None = None
    frames: list[np.ndarray] = field(default_factory=list, repr=False)


@dataclass
class EvalSummary:
    """Means over the episodes of an evaluation."""

    episodes: list[EpisodeResult]

    def _mean(self, values: Sequence[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return float(np.mean(vals)) if vals else None

    @property
    def gt_return(self) -> float | None:
        return self._mean([e.gt_return for e in self.episodes])

    @property
    def clip_return(self) -> float | None:
        return self._mean([e.clip_return for e in self.episodes])

    @property
    def success_rate(self) -> float | None:
        return self._mean([None if e.success is None else float(e.success) for e in self.episodes])

    @property
    def length(self) -> float | None:
        return self._mean([e.length for e in self.episodes])

    def as_dict(self) -> dict:
        return {
            "episodes": len(self.episodes),
            "gt_return": self.gt_return,
            "clip_return": self.clip_return,
            "success_rate": self.success_rate,
            "length": self.length,
            "per_episode": [
                {
                    "gt_return": e.gt_return,
                    "clip_return": e.clip_return,
                    "length": e.length,
                    "success": e.success,
                    "success_fraction": e.success_fraction,
                }
                for e in self.episodes
            ],
        }


def run_episodes(
    model,
    env: gym.Env,
    n_episodes: int,
    *,
    deterministic: bool = True,
    reward_model: Callable | None = None,
    keep_frames: bool = True,
    seed: int | None = None,
    max_steps: int | None = None,
) -> EvalSummary:
    """Run ``n_episodes`` episodes of ``model``'s policy on a single (non-vector) env.

    The episodes step through :func:`vlmrm.rollout.iter_steps`, the one rollout loop.
    Frames are rendered after every step (and after reset, for the video only); the CLIP
    return scores the post-step frames of each episode in one batch.
    """
    want_frames = keep_frames or reward_model is not None

    def policy(obs, info):
        return model.predict(obs, deterministic=deterministic)[0]

    def render(episode: int, t: int, done: bool) -> bool:
        return keep_frames if t == 0 else want_frames

    episodes: list[EpisodeResult] = []
    frames: list[np.ndarray] = []
    scored: list[np.ndarray] = []
    successes: list[bool] = []
    total = 0.0
    for step in iter_steps(env, policy, n_episodes, seed=seed, max_steps=max_steps, render=render):
        if step.is_reset:
            frames, scored, successes, total = [], [], [], 0.0
            if keep_frames:
                frames.append(step.frame)
            continue
        total += step.reward
        if "success" in step.info:
            successes.append(bool(step.info["success"]))
        if keep_frames:
            frames.append(step.frame)
        if reward_model is not None:
            scored.append(step.frame)
        if step.done:
            episodes.append(_episode_result(total, step.t, successes, frames, scored, reward_model))
    return EvalSummary(episodes)


def _episode_result(total, length, successes, frames, scored, reward_model) -> EpisodeResult:
    clip_return = None
    if reward_model is not None and scored:
        clip_return = float(np.sum(score_frames(reward_model, np.stack(scored), np.float64)))
    return EpisodeResult(
        gt_return=total,
        length=length,
        clip_return=clip_return,
        success=successes[-1] if successes else None,
        success_fraction=float(np.mean(successes)) if successes else None,
        frames=frames,
    )
