"""Helpers of the training-reward tests: a NumPy reference of the CLIP reward, a recorder of
what the trainer's reward model is called with, and the replay buffer of a finished run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vlmrm.agents import latest_checkpoint, load_replay_buffer

QUIET = ["progress=false", "eval.episodes=0", "eval.video=false", "checkpoint_every=0"]
#: A tiny DQN run on CartPole: one env, small frames, the tiny random CLIP.
TINY_CARTPOLE = ["env=CartPole", "reward=tiny", "n_envs=1", "env.render_size=[48,48]", *QUIET]


def numpy_reward(clip, frames: np.ndarray, goals: Sequence[str], baselines: Sequence[str] | None,
                 alpha: float) -> np.ndarray:
    """VLM-RM's reward in NumPy: ``1 - ½‖M(s - g)‖²`` with the prompts' mean embeddings.

    ``g`` and ``b`` are the means of the unit prompt embeddings (not re-normalised, as in
    the reference), ``M = αP + (1-α)I`` with ``P`` the projection on ``g - b``, built as
    a matrix here (the library never forms it).
    """
    s = clip.embed_images(frames).cpu().numpy().astype(np.float64)
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    g = clip.embed_texts(list(goals)).cpu().numpy().astype(np.float64).mean(0)
    eye = np.eye(g.shape[0])
    if baselines is None:
        m = eye
    else:
        b = clip.embed_texts(list(baselines)).cpu().numpy().astype(np.float64).mean(0)
        d = g - b
        m = alpha * np.outer(d, d) / (d @ d) + (1 - alpha) * eye
    v = (s - g) @ m.T
    return 1.0 - 0.5 * (v * v).sum(1)


class RecordingReward:
    """Wraps the reward model the trainer builds and keeps every batch it scores."""

    def __init__(self, model) -> None:
        self.model = model
        self.calls: list[np.ndarray] = []

    def __call__(self, frames):
        self.calls.append(np.array(frames, copy=True))
        return self.model(frames)

    def __getattr__(self, name):
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


def record_reward_models(monkeypatch) -> list[RecordingReward]:
    """Every reward model ``vlmrm.train`` builds from now on, recorded (returned list fills up)."""
    from vlmrm.agents import builders

    built: list[RecordingReward] = []
    original = builders.build_reward_model

    def build(reward, goal, baseline):
        model = original(reward, goal, baseline)
        if model is None:
            return None
        built.append(RecordingReward(model))
        return built[-1]

    monkeypatch.setattr(builders, "build_reward_model", build)
    return built


def buffer_rewards(run_dir: Path) -> np.ndarray:
    """The rewards stored in the replay buffer of a run's latest checkpoint, in step order (1 env)."""
    ckpt = latest_checkpoint(run_dir)
    buffer = load_replay_buffer(ckpt.replay_buffer_path, device="cpu")
    assert not buffer.full
    return buffer.rewards[: buffer.pos, 0].astype(np.float64)


def random_policy_frames(env, n: int, seed: int) -> np.ndarray:
    """``n`` frames of a seeded uniformly random policy, each rendered after its step.

    Written out here (not the library's loop) as the protocol the trainer promises: the
    action space seeded with ``seed``, episode ``k`` reset with ``seed + k``.
    """
    env.action_space.seed(seed)
    frames, episode = [], 0
    while len(frames) < n:
        env.reset(seed=seed + episode)
        done = False
        while not done and len(frames) < n:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            frames.append(env.render())
            done = terminated or truncated
        episode += 1
    return np.stack(frames)
