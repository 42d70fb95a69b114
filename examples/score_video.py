"""Check a CLIP reward on a video before training on it.

Records a short random CartPole rollout to an mp4 together with a ground-truth label
(pole within 0.1 rad of upright), scores the video for three α values in one encoding
pass, and reports how well each reward curve tracks the label.

    python examples/score_video.py                      # vlmrm-tiny: runs anywhere, rewards meaningless
    python examples/score_video.py ViT-B-32/openai      # real CLIP weights (from the Hugging Face cache)

The same from the command line, on any video: ``python -m vlmrm.score video.mp4
goal="..." baseline="..." alpha=[0,0.5,1] labels=labels.csv``; and for an env in one
go: ``python -m vlmrm.record env=CartPole episodes=3 alpha=[0,0.5,1]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import vlmrm  # import before creating any MuJoCo env (see vlmrm.envs)
from vlmrm.diagnostics import diagnose
from vlmrm.rollout import iter_steps
from vlmrm.scoring import plot_scores, score_video
from vlmrm.video import VideoWriter


def record_cartpole(path: Path, steps: int = 60, seed: int = 0) -> np.ndarray:
    """Write a random rollout to ``path`` (streaming) and return the per-frame 'upright' label."""
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.action_space.seed(seed)
    upright = []
    rollout = iter_steps(
        env,
        lambda obs, info: env.action_space.sample(),
        episodes=steps,  # enough: every episode has at least one step
        seed=lambda episode: seed if episode == 0 else None,
        render=lambda episode, t, done: t > 0,  # the frame of the state each step reached
    )
    with VideoWriter(path, fps=env.metadata["render_fps"]) as video:
        for step in rollout:
            if step.is_reset:
                continue
            video.write(step.frame)
            upright.append(abs(step.obs[2]) < 0.1)
            if len(upright) == steps:
                break
    env.close()
    return np.asarray(upright, dtype=float)


def main(model: str = "vlmrm-tiny") -> None:
    out = Path("score_video_example")
    out.mkdir(exist_ok=True)
    upright = record_cartpole(out / "cartpole.mp4")

    clip = vlmrm.load_clip(model)
    reward = vlmrm.CLIPReward(
        clip, goal="pole vertically upright on top of the cart", baseline="pole and cart"
    )
    scores = score_video(out / "cartpole.mp4", reward, alphas=[0.0, 0.5, 1.0], progress=True)

    print(f"{len(scores)} frames scored at {scores.fps:g} fps")
    for _, _, alpha, rewards in scores.variants():
        d = diagnose(rewards, upright, label="upright")
        print(
            f"alpha={alpha:<4g} mean={rewards.mean():.4f}  spearman={d.spearman:+.3f}  "
            f"ROC-AUC={d.roc_auc:.3f}  EPIC={d.epic_distance:.3f}"
        )
    print("plot:", plot_scores(scores, out / "cartpole.png", labels={"upright": upright}))
    scores.to_frame().to_csv(out / "scores.csv", index=False)


if __name__ == "__main__":
    main(*sys.argv[1:2])
