"""Tests of the CLIP-friendly environments in ``vlmrm.envs`` (CPU, headless, a few seconds)."""

from __future__ import annotations

# vlmrm.envs imports torchvision (triton) before any MuJoCo EGL context can exist, and
# defaults MUJOCO_GL to egl; see envs/__init__.py.
import pickle

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.utils.passive_env_checker import env_render_passive_checker

from vlmrm.envs import ENV_DEFAULTS, get_env_defaults, make_env, register_envs
from vlmrm.envs.cartpole import UPRIGHT_ANGLE, CartPoleEnv
from vlmrm.envs.humanoid import TexturedHumanoidEnv
from vlmrm.envs.mountain_car import SKY_COLOR, MountainCarContinuousEnv

IDS = {
    "CartPole": "vlmrm/CartPole-v0",
    "MountainCar": "vlmrm/MountainCarContinuous-v0",
    "Humanoid": "vlmrm/Humanoid-v0",
}


def _rollout(env: gym.Env, steps: int, seed: int = 0):
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, info = env.reset()
    return obs, info


# ---------------------------------------------------------------- registration, defaults


def test_ids_registered_and_registration_idempotent():
    for env_id in IDS.values():
        assert env_id in gym.registry
    register_envs()  # a second call must not raise or re-register
    assert {d.env_id for d in ENV_DEFAULTS.values()} == set(IDS.values())


def test_env_defaults():
    assert set(ENV_DEFAULTS) == set(IDS)
    humanoid = ENV_DEFAULTS["Humanoid"]
    assert humanoid.goal_prompt() == "a humanoid robot kneeling"
    assert humanoid.goal_prompt("sitting") == "a humanoid robot sitting"
    assert humanoid.baseline == "a humanoid robot"
    assert humanoid.episode_length == 100
    assert ENV_DEFAULTS["CartPole"].goal_prompt() == "pole vertically upright on top of the cart"
    assert ENV_DEFAULTS["MountainCar"].baseline == "a car in the mountain"
    for name, defaults in ENV_DEFAULTS.items():
        assert defaults.name == name
        assert defaults.render_size == (224, 224)
        assert "{goal}" in defaults.goal_template
        assert gym.spec(defaults.env_id).max_episode_steps == defaults.episode_length
    assert get_env_defaults("humanoid") is humanoid
    assert get_env_defaults("vlmrm/Humanoid-v0") is humanoid


def test_env_defaults_are_read_from_the_env_config_files():
    """configs/env/<name>.yaml is the one source of an env's defaults (ids, prompts, sizes)."""
    from importlib import resources

    from omegaconf import OmegaConf

    from vlmrm.envs.registry import env_defaults_from_config

    folder = resources.files("vlmrm.configs") / "env"
    for name, defaults in ENV_DEFAULTS.items():
        section = OmegaConf.to_container(OmegaConf.load(str(folder / f"{name}.yaml")).env)
        assert env_defaults_from_config(section) == defaults, name
        assert section["render_size"] == "auto"  # the trainer draws at the reward model's size
        assert gym.spec(defaults.env_id).kwargs["width"] == defaults.render_size[0] == 224
    from vlmrm.envs.humanoid import REFERENCE_CAMERA

    assert ENV_DEFAULTS["Humanoid"].env_kwargs == {"fixed_length": True, "camera_config": REFERENCE_CAMERA}
    assert gym.spec("vlmrm/Humanoid-v0").kwargs["fixed_length"] is True


def test_make_env_names_and_errors():
    env = make_env("cartpole", episode_length=7)
    assert env.spec.id == IDS["CartPole"] and env.spec.max_episode_steps == 7
    assert env.unwrapped.render_mode == "rgb_array"
    assert env.unwrapped.screen_width == 224
    env.close()
    env = make_env("CartPole-v1")  # any gymnasium id; width/height not forced on it
    assert env.spec.max_episode_steps == 500
    env.close()
    with pytest.raises(ValueError, match="Humanoid"):
        make_env("Hopper")
    with pytest.raises(ValueError, match="episode_length"):
        make_env("CartPole", episode_length=0)
    with pytest.raises(ValueError, match="width"):
        make_env("MountainCar", width=0)
    with pytest.raises(ValueError, match="height"):
        make_env("CartPole", height=12.5)


@pytest.mark.parametrize("cls", [CartPoleEnv, MountainCarContinuousEnv, TexturedHumanoidEnv])
def test_render_without_render_mode_warns(cls):
    env = cls()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None
    env.close()


@pytest.mark.parametrize("cls", [CartPoleEnv, MountainCarContinuousEnv, TexturedHumanoidEnv])
def test_bad_sizes_name_the_argument(cls):
    with pytest.raises(ValueError, match="width"):
        cls(render_mode="rgb_array", width=-3)
    with pytest.raises(ValueError, match="height"):
        cls(render_mode="rgb_array", height="224")
    with pytest.raises(ValueError, match="render_mode"):
        cls(render_mode="rgb")


# --------------------------------------------------------------------- every environment


@pytest.mark.parametrize("name", list(IDS))
@pytest.mark.parametrize("size", [(224, 224), (160, 120)])
def test_render_at_requested_size(name, size, tmp_path):
    width, height = size
    env = gym.make(IDS[name], render_mode="rgb_array", width=width, height=height)
    _rollout(env, steps=5)
    frame = env.render()
    env.close()
    assert frame.dtype == np.uint8 and frame.shape == (height, width, 3)
    assert frame.flags.c_contiguous  # torch.from_numpy needs non-negative strides
    assert frame.min() < frame.max()  # not a constant image
    path = tmp_path / f"{name}_{width}x{height}.png"
    iio.imwrite(path, frame)
    np.testing.assert_array_equal(iio.imread(path), frame)


@pytest.mark.filterwarnings("ignore:.*A Box observation space m")  # gymnasium's own spaces
@pytest.mark.parametrize("name", list(IDS))
def test_check_env(name):
    env = gym.make(IDS[name], render_mode="rgb_array", width=64, height=48)
    if name == "Humanoid":
        # check_env would also open a "human" window, which aborts without a display;
        # check the off-screen render modes by hand instead.
        check_env(env.unwrapped, skip_render_check=True)
        env_render_passive_checker(env.unwrapped)
        for mode in ("depth_array", "rgbd_tuple"):
            other = gym.make(IDS[name], render_mode=mode, width=64, height=48)
            other.reset(seed=0)
            env_render_passive_checker(other.unwrapped)
            other.close()
    else:
        check_env(env.unwrapped)
    env.close()


# ------------------------------------------------------------------------------ CartPole


def test_cartpole_matches_gymnasium():
    ours = gym.make(IDS["CartPole"], render_mode="rgb_array", width=600, height=400)
    ref = gym.make("CartPole-v1", render_mode="rgb_array")
    obs_a, info = ours.reset(seed=3)
    obs_b, _ = ref.reset(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert info["state"].shape == (4,)
    for t in range(12):
        a = ours.step(t % 2)
        b = ref.step(t % 2)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        np.testing.assert_allclose(a[4]["state"], a[0], rtol=1e-6)
        assert a[4]["success"] == (abs(a[4]["state"][2]) < UPRIGHT_ANGLE)
    # At gymnasium's size the drawing is gymnasium's, up to anti-aliasing of edges.
    differing = np.any(ours.render() != ref.render(), axis=-1).mean()
    assert differing < 0.01
    ours.close()
    ref.close()


# --------------------------------------------------------------------------- MountainCar


def test_mountain_car_clean_background_and_success():
    env = gym.make(IDS["MountainCar"], render_mode="rgb_array", width=160, height=120)
    ref = gym.make("MountainCarContinuous-v0")
    obs, info = env.reset(seed=0)
    obs_ref, _ = ref.reset(seed=0)
    np.testing.assert_array_equal(obs, obs_ref)
    assert not info["success"]
    for _ in range(5):
        a = env.step(np.array([1.0], dtype=np.float32))
        b = ref.step(np.array([1.0], dtype=np.float32))
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]
    frame = env.render()
    sky = np.array(SKY_COLOR, dtype=np.uint8)
    assert (frame[:10] == sky).all()  # top rows: nothing but the plain sky colour
    assert (frame == sky).all(axis=-1).mean() > 0.3
    assert not (frame[-5:] == sky).all(axis=-1).any()  # bottom rows: hill everywhere
    car = np.abs(frame.astype(int) - (205, 38, 38)).sum(-1) < 30
    assert car.sum() > 20  # the red car is drawn
    env.unwrapped.state = np.array([env.unwrapped.goal_position - 0.01, 0.03])
    _, _, terminated, _, info = env.step(np.array([0.0], dtype=np.float32))
    assert info["success"] and terminated
    env.close()
    ref.close()


# ------------------------------------------------------------------------------ Humanoid


def test_humanoid_textured_frame(tmp_path):
    env = make_env("Humanoid")
    obs, info = _rollout(env, steps=10)
    frame = env.render()
    env.close()
    assert frame.shape == (224, 224, 3)
    iio.imwrite(tmp_path / "humanoid.png", frame)
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 500  # textured, shaded
    top = frame[:20].reshape(-1, 3).astype(float).mean(0)
    bottom = frame[-40:].reshape(-1, 3).astype(float)
    assert top[2] > top[0] + 30  # the sky is blue
    assert bottom.std(0).mean() > 30  # the checkered floor has contrasting tiles
    assert np.abs(top - bottom.mean(0)).sum() > 60
    # The tracking camera keeps the light-grey body near the middle of the frame.
    centre = frame[56:168, 72:152].astype(int)
    body = (centre.min(-1) > 150) & (np.ptp(centre, axis=-1) < 25)
    assert body.mean() > 0.03
    assert 0.5 < info["torso_height"] < 2.0


def test_humanoid_fixed_length_episode():
    env = make_env("Humanoid", episode_length=8, width=32, height=32)
    env.reset(seed=0)
    unwrapped = env.unwrapped
    qpos, qvel = unwrapped.data.qpos.copy(), unwrapped.data.qvel.copy()
    qpos[2] = 0.3  # lying on the floor: "unhealthy", would end a Humanoid-v5 episode
    unwrapped.set_state(qpos, qvel)
    heights = []
    for step in range(1, 9):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (step == 8)
        heights.append(info["torso_height"])
    assert heights[0] < 1.0  # below Humanoid-v5's healthy range, yet not terminated
    env.close()

    early = make_env("Humanoid", fixed_length=False, width=32, height=32)
    early.reset(seed=0)
    early.unwrapped.set_state(qpos, qvel)
    assert early.step(early.action_space.sample())[2]  # terminated at once
    early.close()
    with pytest.raises(ValueError, match="terminate_when_unhealthy"):
        TexturedHumanoidEnv(terminate_when_unhealthy=True)


def test_humanoid_dynamics_match_gymnasium():
    ours = make_env("Humanoid", fixed_length=False, width=32, height=32)
    ref = gym.make("Humanoid-v5")
    obs_a, info = ours.reset(seed=1)
    obs_b, _ = ref.reset(seed=1)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert "torso_height" in info
    rng = np.random.default_rng(0)
    for _ in range(15):
        action = rng.uniform(-0.4, 0.4, size=17).astype(np.float32)
        a, b = ours.step(action), ref.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
    ours.close()
    ref.close()


def test_humanoid_pickles_with_its_settings():
    env = TexturedHumanoidEnv(render_mode="rgb_array", width=40, height=30, fixed_length=False)
    copy = pickle.loads(pickle.dumps(env))
    assert (copy.width, copy.height, copy.fixed_length) == (40, 30, False)
    assert copy.render_mode == "rgb_array"
    env.close()
    copy.close()


def test_classic_control_frames_print_no_sdl_line_without_a_window_system(tmp_path):
    """pygame's SDL probes for a window system on the first classic-control render and, on a
    headless machine, prints ``error: XDG_RUNTIME_DIR is invalid...``, which reads like one of
    ours; importing vlmrm picks SDL's dummy video driver when there is no display."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "SDL_VIDEODRIVER")}
    script = ("{}import gymnasium as gym\n"
              "e = gym.make('CartPole-v1', render_mode='rgb_array'); e.reset(seed=0)\n"
              "assert e.render().shape == (400, 600, 3)\n")

    def stderr(prefix: str) -> str:
        res = subprocess.run([sys.executable, "-c", script.format(prefix)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        return res.stderr

    if "XDG_RUNTIME_DIR" not in stderr(""):
        pytest.skip("this machine's SDL prints no XDG_RUNTIME_DIR line even without vlmrm")
    assert "XDG_RUNTIME_DIR" not in stderr("import vlmrm\n")
