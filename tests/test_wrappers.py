"""Wrappers: gymnasium API compliance and identical rewards across single/vector/SB3 forms."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vlmrm
from vlmrm.errors import ConfigError

N_ENVS = 3
STEPS = 40  # always pushing right, CartPole episodes end after ~10 steps: several episode ends


@pytest.fixture(scope="module")
def reward_model(tiny_clip):
    return vlmrm.CLIPReward(tiny_clip, goal="pole vertically upright on top of the cart", baseline="pole and cart", alpha=0.5)


def _single_env_trace(reward_model, seed: int) -> tuple[list[float], list[bool]]:
    """Rewards and done flags of one CartPole under the single-env wrapper, resetting by hand."""
    env = vlmrm.CLIPRewardWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), reward_model)
    env.reset(seed=seed)
    rewards, dones = [], []
    while len(rewards) < STEPS:
        _, r, term, trunc, _ = env.step(1)
        rewards.append(r)
        dones.append(term or trunc)
        if term or trunc:
            env.reset()
    return rewards, dones


def test_check_env_passes(reward_model):
    env = vlmrm.CLIPRewardWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), reward_model)
    check_env(env, skip_render_check=True)


def test_single_wrapper_reward_and_info(reward_model):
    env = vlmrm.CLIPRewardWrapper(
        gym.make("CartPole-v1", render_mode="rgb_array"), reward_model, env_reward_weight=0.5, frame_in_info=True
    )
    env.reset(seed=1)
    _, r, _, _, info = env.step(0)
    frame = info["frame"]
    assert frame.dtype == np.uint8 and frame.ndim == 3
    expected = float(reward_model(frame[None])[0])
    assert info["clip_reward"] == pytest.approx(expected, abs=1e-6)
    assert info["original_reward"] == 1.0
    assert r == pytest.approx(expected + 0.5, abs=1e-6)


def test_vector_wrapper_matches_single_env(reward_model):
    singles = [_single_env_trace(reward_model, seed=i) for i in range(N_ENVS)]
    venv = vlmrm.CLIPRewardVectorWrapper(
        gym.make_vec("CartPole-v1", num_envs=N_ENVS, vectorization_mode="sync", render_mode="rgb_array"), reward_model
    )
    venv.reset(seed=0)  # sub-env i gets seed i
    got = [[] for _ in range(N_ENVS)]
    pending_reset = np.zeros(N_ENVS, bool)
    while min(len(g) for g in got) < STEPS:
        _, r, term, trunc, info = venv.step(np.ones(N_ENVS, dtype=np.int64))
        for i in range(N_ENVS):
            if pending_reset[i]:
                assert r[i] == 0.0  # next-step autoreset: the reset step carries no reward
            else:
                got[i].append(float(r[i]))
        pending_reset = term | trunc
    for i, (want, dones) in enumerate(singles):
        assert any(dones), "the trace must contain episode ends"
        np.testing.assert_allclose(got[i][:STEPS], want, atol=1e-6)


def test_sb3_wrapper_matches_single_env_including_last_frame(reward_model):
    singles = [_single_env_trace(reward_model, seed=i) for i in range(N_ENVS)]
    venv = vlmrm.CLIPRewardVecEnvWrapper(vlmrm.make_vec_env("CartPole-v1", N_ENVS, seed=0), reward_model)
    venv.reset()
    rewards, dones, clip_returns = [], [], []
    for _ in range(STEPS):
        _, r, d, infos = venv.step(np.ones(N_ENVS, dtype=np.int64))
        rewards.append(r)
        dones.append(d)
        for info in infos:
            assert "frame" not in info  # frames are dropped unless asked for
            if "clip_episode" in info:
                clip_returns.append(info["clip_episode"])
                assert "episode" in info  # SB3 Monitor: ground-truth return
    rewards, dones = np.array(rewards), np.array(dones)
    for i, (want, want_dones) in enumerate(singles):
        np.testing.assert_allclose(rewards[:, i], want, atol=1e-6)
        assert list(dones[:, i]) == want_dones
        # the reward at an episode end is that of the episode's true final frame
        last = int(np.flatnonzero(dones[:, i])[0])
        assert rewards[last, i] == pytest.approx(want[last], abs=1e-6)
    assert clip_returns and all(c["l"] > 0 for c in clip_returns)


def test_env_without_rgb_array_rendering(reward_model):
    with pytest.raises(ConfigError, match="render_mode='rgb_array'"):
        vlmrm.CLIPRewardWrapper(gym.make("CartPole-v1"), reward_model)


def test_sb3_wrapper_needs_frames_in_info(reward_model):
    from stable_baselines3.common.env_util import make_vec_env

    plain = make_vec_env("CartPole-v1", n_envs=2, env_kwargs={"render_mode": "rgb_array"})
    venv = vlmrm.CLIPRewardVecEnvWrapper(plain, reward_model)
    venv.reset()
    with pytest.raises(ConfigError, match="RenderFrameToInfo"):
        venv.step(np.zeros(2, dtype=np.int64))


def test_any_callable_reward(tiny_clip):
    env = vlmrm.CLIPRewardWrapper(
        gym.make("CartPole-v1", render_mode="rgb_array"), lambda f: f.reshape(len(f), -1).mean(1) / 255.0
    )
    env.reset(seed=0)
    _, r, *_ = env.step(0)
    assert 0.0 < r < 1.0


def test_vector_wrapper_same_step_autoreset_uses_final_frames(reward_model):
    """With same-step autoreset the frames come from RenderFrameToInfo, final ones from final_info."""
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    singles = [_single_env_trace(reward_model, seed=i) for i in range(N_ENVS)]
    fns = [lambda: vlmrm.RenderFrameToInfo(gym.make("CartPole-v1", render_mode="rgb_array")) for _ in range(N_ENVS)]
    venv = vlmrm.CLIPRewardVectorWrapper(SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP), reward_model)
    venv.reset(seed=0)
    rewards = np.array([venv.step(np.ones(N_ENVS, dtype=np.int64))[1] for _ in range(STEPS)])
    for i, (want, dones) in enumerate(singles):
        assert any(dones)
        np.testing.assert_allclose(rewards[:, i], want, atol=1e-6)


def test_vector_wrapper_same_step_without_frames_in_info(reward_model):
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    fns = [lambda: gym.make("CartPole-v1", render_mode="rgb_array") for _ in range(2)]
    venv = vlmrm.CLIPRewardVectorWrapper(SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP), reward_model)
    venv.reset(seed=0)
    with pytest.raises(ConfigError, match="RenderFrameToInfo"):
        venv.step(np.zeros(2, dtype=np.int64))


def test_training_envs_are_built_by_make_vec_env(monkeypatch):
    """One construction path: the trainer's make_training_env is vlmrm.make_vec_env."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    import vlmrm.wrappers
    from vlmrm.agents.vec_env import EnvFactory, make_training_env

    calls = []
    real = vlmrm.wrappers.make_vec_env
    monkeypatch.setattr(vlmrm.wrappers, "make_vec_env", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    factory = EnvFactory("vlmrm/CartPole-v0", episode_length=5, width=32, height=32)
    venv = make_training_env(factory, 2, seed=0, subprocess=False, render_frames=False)
    try:
        assert len(calls) == 1 and calls[0][1]["render_frames"] is False
        assert isinstance(venv, DummyVecEnv)
        venv.reset()
        _, _, _, infos = venv.step(np.zeros(2, dtype=np.int64))
        assert all("frame" not in info for info in infos)  # ground truth never renders
    finally:
        venv.close()
