"""gymnasium's and Stable-Baselines3's env checkers on every registered env, bare and wrapped.

gymnasium's ``check_env`` re-makes the env (through its spec, wrappers included) in every
declared render mode, so a wrapper that declares a mode it refuses, or an env that
declares ``human`` where no window can open, fails here.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import vlmrm
import vlmrm.envs  # noqa: F401 (registers the envs)
from vlmrm.wrappers import RenderFrameToInfo

ENV_IDS = sorted(i for i in gym.registry if i.startswith("vlmrm/"))
WRAPS = {
    "bare": lambda env, reward: env,
    "CLIPRewardWrapper": lambda env, reward: vlmrm.CLIPRewardWrapper(env, reward),
    "RenderFrameToInfo": lambda env, reward: RenderFrameToInfo(env),
}


@pytest.fixture(scope="module")
def reward(tiny_clip):
    return vlmrm.CLIPReward(tiny_clip, goal="a pole standing upright")


def test_every_registered_env_is_listed():
    assert ENV_IDS == ["vlmrm/CartPole-v0", "vlmrm/Humanoid-v0", "vlmrm/MountainCarContinuous-v0"]


@pytest.mark.parametrize("wrap", sorted(WRAPS))
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_checkers_pass(env_id, wrap, reward):
    env = WRAPS[wrap](gym.make(env_id, render_mode="rgb_array"), reward)
    try:
        modes = env.metadata["render_modes"]
        assert "rgb_array" in modes and (wrap == "bare" or modes == ["rgb_array"]), modes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # advice (unbounded Box, asymmetric actions), not failures
            check_env(env, skip_render_check=False)
            sb3_check_env(env, warn=False)
    finally:
        env.close()


def test_humanoid_declares_human_only_with_a_window(monkeypatch):
    from vlmrm.envs.humanoid import render_modes

    monkeypatch.setenv("MUJOCO_GL", "egl")
    assert render_modes() == ["rgb_array", "depth_array", "rgbd_tuple"]
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        gym.make("vlmrm/Humanoid-v0", render_mode="human")
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    assert render_modes()[0] == "human"
