"""Deterministic evaluation episodes and their videos.

Used during training (periodic evaluation videos) and by ``python -m vlmrm.evaluate``.
The ground-truth return is the env's own reward; the CLIP return is the reward model
applied to the same frames after each step (what training optimises). "Success" is the
env's ``info["success"]`` at the last step of an episode, where the env defines it
(CartPole: pole upright, MountainCar: car at the flag; Humanoid has none).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from vlmrm.reward import score_frames


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

    Frames are rendered after every step (and after reset, for the video only); the CLIP
    return scores the post-step frames of each episode in one batch.
    """
    episodes = []
    for ep in range(n_episodes):
        obs, info = env.reset(seed=None if seed is None else seed + ep)
        frames = [env.render()] if keep_frames else []
        scored: list[np.ndarray] = []
        total, steps, successes = 0.0, 0, []
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=deterministic)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            if "success" in info:
                successes.append(bool(info["success"]))
            if keep_frames or reward_model is not None:
                frame = env.render()
                if keep_frames:
                    frames.append(frame)
                if reward_model is not None:
                    scored.append(frame)
            done = terminated or truncated or (max_steps is not None and steps >= max_steps)
        clip_return = None
        if reward_model is not None and scored:
            clip_return = float(np.sum(score_frames(reward_model, np.stack(scored), np.float64)))
        episodes.append(
            EpisodeResult(
                gt_return=total,
                length=steps,
                clip_return=clip_return,
                success=successes[-1] if successes else None,
                success_fraction=float(np.mean(successes)) if successes else None,
                frames=frames,
            )
        )
    return EvalSummary(episodes)


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 30.0) -> Path:
    """Write ``(H, W, 3)`` uint8 frames as an H.264 mp4 through imageio/ffmpeg."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    # H.264 in yuv420p needs even sides: pad odd frames by one edge row/column instead of
    # letting imageio rescale them (macro_block_size=1 turns its rescaling off).
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=1) as writer:
        for frame in frames:
            h, w = frame.shape[:2]
            if h % 2 or w % 2:
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            writer.append_data(np.ascontiguousarray(frame))
    os.replace(tmp, path)
    return path
