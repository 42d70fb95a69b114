"""Exploration and camera settings of ``vlmrm.train``: ``agent.action_noise`` for the
off-policy continuous agents, and the Humanoid's tracking camera (``env.kwargs.camera_config``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.vec_env import DummyVecEnv

from vlmrm.agents import compose_train_config
from vlmrm.agents.builders import build_agent
from vlmrm.agents.vec_env import env_factory
from vlmrm.envs.humanoid import REFERENCE_CAMERA, TexturedHumanoidEnv, camera_view
from vlmrm.errors import ConfigError
from vlmrm.train import main as train_main

# -- action noise -----------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
@pytest.mark.parametrize("noise, cls, sigma", [("normal:0.2", NormalActionNoise, 0.2),
                                               ("ornstein-uhlenbeck:0.05", OrnsteinUhlenbeckActionNoise, 0.05)])
def test_action_noise_for_off_policy_continuous_agents(algo, noise, cls, sigma):
    cfg = compose_train_config(["env=MountainCar", f"agent={algo}", "reward=tiny", f"agent.action_noise={noise}"])
    venv = DummyVecEnv([lambda: gym.make("MountainCarContinuous-v0")])
    agent = build_agent(cfg.agent, venv, seed=0, device="cpu")
    assert isinstance(agent.action_noise, cls)
    np.testing.assert_allclose(agent.action_noise._sigma, [sigma])
    # the noise is what SB3 adds to the policy's actions while collecting
    agent._last_obs = venv.reset()
    noisy, _ = agent._sample_action(learning_starts=0, action_noise=agent.action_noise, n_envs=1)
    clean, _ = agent._sample_action(learning_starts=0, action_noise=None, n_envs=1)
    assert noisy.shape == clean.shape == (1, 1)
    if algo != "sac":  # deterministic policies: the difference is the noise alone
        assert 0 < abs(float(noisy[0, 0] - clean[0, 0])) < 10 * sigma + 1e-9 or abs(float(clean[0, 0])) == 1.0
    venv.close()


@pytest.mark.parametrize(
    "argv, words",
    [(["env=CartPole", "agent=ppo"], "ppo explores by sampling its stochastic policy"),
     (["env=CartPole", "agent=dqn"], "dqn explores by ε-greedy"),
     (["env=MountainCar", "agent=a2c"], "a2c explores by sampling"),
     (["env=MountainCar", "agent.action_noise=gauss:0.1"], "use normal:<std> or ornstein-uhlenbeck:<std>"),
     (["env=MountainCar", "agent.action_noise=normal:-1"], "with std > 0")],
)
def test_action_noise_errors_are_one_clear_line(argv, words, capsys, tmp_path):
    noise = [] if any(a.startswith("agent.action_noise") for a in argv) else ["agent.action_noise=normal:0.1"]
    assert train_main([*argv, *noise, "reward=tiny", f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: agent.action_noise") and "\n" not in err and words in err, err


# -- the Humanoid camera ----------------------------------------------------------------


def _frame(env, steps: int = 3) -> np.ndarray:
    env.reset(seed=0)
    for _ in range(steps):
        env.step(np.zeros(env.action_space.shape))
    frame = env.render().astype(np.int16)
    env.close()
    return frame


def _env(**kwargs) -> TexturedHumanoidEnv:
    return TexturedHumanoidEnv(render_mode="rgb_array", width=64, height=64, **kwargs)


def test_default_humanoid_camera_is_the_reference_view():
    """The VLM-RM model's camera: 4 m to the side of the torso (pos 0 -4 0), level, along +y."""
    cfg = compose_train_config(["env=Humanoid", "reward=tiny"])
    assert cfg.env.kwargs.camera_config == REFERENCE_CAMERA
    env = env_factory(cfg.env)()
    import mujoco

    model, data = env.unwrapped.model, env.unwrapped.data
    env.reset(seed=0)
    mujoco.mj_forward(model, data)
    torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")
    com0 = data.subtree_com[torso].copy()
    # the reference's camera in the torso's frame of the initial pose
    q0 = mujoco.MjData(model)
    mujoco.mj_forward(model, q0)
    np.testing.assert_allclose(q0.cam_xpos[0] - q0.xpos[torso], [0.0, -4.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(-data.cam_xmat[0].reshape(3, 3)[:, 2], [0.0, 1.0, 0.0], atol=1e-9)
    assert np.all(np.isfinite(com0))
    env.close()


def test_camera_settings_change_the_frame_and_none_keeps_the_models_camera():
    today = _frame(_env())  # no camera_config: the model's own side-front camera
    view = camera_view(_env().model, 0)
    assert view["distance"] == pytest.approx(2.976, abs=1e-3) and view["azimuth"] == pytest.approx(120, abs=1e-2)
    # the model's camera written back as settings renders the same frames
    assert np.abs(_frame(_env(camera_config=view)) - today).max() <= 1
    # each setting alone changes the frame, keeping the others
    for change in ({"distance": 3.5}, {"elevation": -30.0}, {"azimuth": 90.0}, {"body": "pelvis"},
                   {"lookat": [0.0, 0.0, 0.5]}):
        assert np.abs(_frame(_env(camera_config=change)) - today).mean() > 2, change
    reference = _frame(_env(camera_config=REFERENCE_CAMERA))
    assert np.abs(reference - today).mean() > 2


def test_camera_settings_from_the_command_line():
    default = compose_train_config(["env=Humanoid", "reward=tiny", "env.render_size=[64,64]"])
    closer = compose_train_config(["env=Humanoid", "reward=tiny", "env.render_size=[64,64]",
                                   "env.kwargs.camera_config.distance=2.5"])
    assert closer.env.kwargs.camera_config.distance == 2.5 and closer.env.kwargs.camera_config.azimuth == 90.0
    assert np.abs(_frame(env_factory(closer.env)()) - _frame(env_factory(default.env)())).mean() > 2
    model_camera = compose_train_config(["env=Humanoid", "reward=tiny", "env.render_size=[64,64]",
                                         "env.kwargs.camera_config=null"])
    assert np.abs(_frame(env_factory(model_camera.env)()) - _frame(_env())).max() == 0


@pytest.mark.parametrize("config, words", [({"zoom": 2}, "unknown key"), ({"body": "tail"}, "no body"),
                                           ({"distance": -1}, "positive"), ({"elevation": 90}, "elevation")])
def test_bad_camera_settings(config, words):
    with pytest.raises(ValueError, match=words):
        _env(camera_config=config)
    from vlmrm.agents.vec_env import check_env_factory

    cfg = compose_train_config(["env=Humanoid", "reward=tiny", "env.render_size=[64,64]"])
    cfg.env.kwargs.camera_config = config
    with pytest.raises(ConfigError, match=words):
        check_env_factory(env_factory(cfg.env))
