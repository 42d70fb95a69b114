"""Episode-batched relabelling, checkpoints and signal handling of ``vlmrm.agents``.

The relabelling tests use an env whose frames and observations both encode
``(env, episode, t)``, and a "reward model" that decodes the frame: every reward in the
replay buffer must then equal the code of the transition's own next observation. That
one invariant shows that rewards land in the right slots (also across buffer
wrap-around and several sub-envs), that the last frame of an episode is that episode's
final frame (not the next reset's), and that nothing is left unrelabelled.
"""

from __future__ import annotations

import os
import signal

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

import vlmrm
from vlmrm.agents import (
    EnvFactory,
    EpisodeRelabeller,
    GracefulStop,
    load_replay_buffer,
    make_training_env,
    resize_uint8,
    save_replay_buffer,
)
from vlmrm.agents.builders import agent_kwargs, check_action_space, check_agent_params
from vlmrm.errors import ConfigError

EPISODE_LENGTH = 7  # time limit (truncation)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on shared CPUs: one thread is many times faster than OpenMP's two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TERMINATE_AT = 4  # every third episode terminates here instead


class CodeEnv(gym.Env):
    """Observation ``[env, episode, t]``; the frame encodes the same numbers in its pixels."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, env_index: int = 0, discrete: bool = False, render_mode: str = "rgb_array") -> None:
        self.env_index = env_index
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1e9, 1e9, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2) if discrete else gym.spaces.Box(-1, 1, (1,), np.float32)
        self.episode, self.t = -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.env_index, self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = self.episode % 3 == 1 and self.t == TERMINATE_AT
        return self._obs(), 1.0, terminated, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((6, 6, 3), np.uint8)
        frame[..., 0] = self.env_index
        frame[..., 1] = self.episode % 256
        frame[..., 2] = self.t
        return frame


def code(obs: np.ndarray) -> np.ndarray:
    return obs[..., 0] * 1e6 + obs[..., 1] * 1e3 + obs[..., 2]


def decode_frames(frames: np.ndarray) -> np.ndarray:
    px = frames[:, 0, 0, :].astype(np.float64)
    return px[:, 0] * 1e6 + px[:, 1] * 1e3 + px[:, 2]


class _Factory:
    """Picklable-enough factory giving each sub-env its own index."""

    def __init__(self, discrete: bool) -> None:
        self.discrete = discrete
        self.count = 0

    def __call__(self) -> gym.Env:
        env = CodeEnv(self.count, self.discrete)
        self.count += 1
        return gym.wrappers.TimeLimit(env, EPISODE_LENGTH)


def _filled(buffer) -> int:
    return buffer.buffer_size if buffer.full else buffer.pos


class FlushEvery(BaseCallback):
    """Flushes the relabeller while a step is in flight (as checkpointing does)."""

    def __init__(self, relabeller, every: int) -> None:
        super().__init__()
        self.relabeller, self.every = relabeller, every

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            self.relabeller.flush()
        return True


@pytest.mark.parametrize(
    "algo, n_envs, train_freq, buffer_size, max_pending, flush_every",
    [
        ("sac", 1, 5, 1000, 10_000, None),
        ("sac", 2, 30, 40, 10_000, None),
        ("dqn", 3, 4, 75, 10_000, None),
        ("sac", 2, 30, 1000, 7, 3),  # early flushes, and flushes with a step in flight
    ],
)
def test_relabelled_rewards_match_frames(algo, n_envs, train_freq, buffer_size, max_pending, flush_every):
    discrete = algo == "dqn"
    venv = make_training_env(_Factory(discrete), n_envs, seed=0, render_frames=True)
    cls = DQN if discrete else SAC
    extra = {"target_update_interval": 5} if discrete else {}
    model = cls(
        "MlpPolicy",
        venv,
        buffer_size=buffer_size,
        learning_starts=10,
        train_freq=train_freq,
        gradient_steps=2,
        batch_size=8,
        policy_kwargs={"net_arch": [8]},
        seed=0,
        device="cpu",
        **extra,
    )
    calls = []
    relabeller = EpisodeRelabeller(decode_frames, max_pending_frames=max_pending)
    callbacks = [relabeller] + ([FlushEvery(relabeller, flush_every)] if flush_every else [])
    original_train = model.train

    def checked_train(*args, **kwargs):
        # Training must only ever see relabelled rewards: no NaN placeholder anywhere.
        rewards = model.replay_buffer.rewards[: _filled(model.replay_buffer)]
        assert not np.isnan(rewards).any()
        calls.append(_filled(model.replay_buffer))
        return original_train(*args, **kwargs)

    model.train = checked_train
    model.learn(total_timesteps=100 * n_envs, callback=CallbackList(callbacks))
    relabeller.flush()
    venv.close()

    buffer = model.replay_buffer
    n = _filled(buffer)
    assert calls, "training never ran"
    assert buffer.handle_timeout_termination
    rewards = buffer.rewards[:n]
    assert not np.isnan(rewards).any()
    # Every reward is the decoded frame of the transition's own next state ...
    np.testing.assert_array_equal(rewards, code(buffer.next_observations[:n]).astype(np.float32))
    # ... so no reward ever comes from a reset frame (t = 0), and at episode ends the
    # frame is the final frame of that same episode.
    t_of_reward = np.round(rewards) % 1000
    assert (t_of_reward > 0).all()
    done = buffer.dones[:n].astype(bool)
    assert set(np.unique(t_of_reward[done])) <= {TERMINATE_AT, EPISODE_LENGTH}
    # Time-limit ends are truncations (bootstrapped), early ends terminations.
    truncated = done & (t_of_reward == EPISODE_LENGTH)
    terminated = done & (t_of_reward == TERMINATE_AT)
    assert truncated.any() and terminated.any()
    np.testing.assert_array_equal(buffer.timeouts[:n][truncated], 1.0)
    np.testing.assert_array_equal(buffer.timeouts[:n][terminated], 0.0)
    if n_envs == 1:
        samples = buffer._get_samples(np.arange(n))
        sampled_dones = samples.dones.numpy().reshape(-1)
        assert (sampled_dones[truncated[:, 0]] == 0).all()
        assert (sampled_dones[terminated[:, 0]] == 1).all()
    if buffer_size // n_envs < train_freq:
        assert buffer.full and relabeller.flushes > calls.__len__()  # wrap guard flushed early


class FrameLog(gym.Wrapper):
    """Remembers every post-step (observation, frame) pair, for checking the CLIP labels."""

    log: list[tuple[np.ndarray, np.ndarray]] = []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        FrameLog.log.append((np.asarray(obs).copy(), self.env.render().copy()))
        return obs, reward, terminated, truncated, info


class LoggedCartPole:
    def __init__(self) -> None:
        self.factory = EnvFactory("vlmrm/CartPole-v0", episode_length=12, width=96, height=96)

    def __call__(self) -> gym.Env:
        return FrameLog(self.factory())


def test_clip_relabelling_equals_reward_of_stored_frames(tiny_clip):
    """With the real (tiny) CLIP: buffer rewards = CLIP reward of the frames, resized to
    CLIP's input as uint8 — with a CLIP batch size that divides nothing."""
    FrameLog.log = []
    reward = vlmrm.CLIPReward(tiny_clip, goal="pole upright", baseline="pole and cart", alpha=0.5, batch_size=5)
    venv = make_training_env(LoggedCartPole(), 3, seed=1, render_frames=True)
    model = DQN("MlpPolicy", venv, buffer_size=1000, learning_starts=20, train_freq=7, gradient_steps=1,
                batch_size=8, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    relabeller = EpisodeRelabeller(reward)
    assert relabeller.frame_size == tiny_clip.image_size
    model.learn(total_timesteps=3 * 40, callback=relabeller)
    relabeller.flush()
    venv.close()

    buffer = model.replay_buffer
    n = _filled(buffer)
    next_obs = buffer.next_observations[:n].reshape(-1, 4)
    got = buffer.rewards[:n].reshape(-1)
    frames = {obs.tobytes(): frame for obs, frame in FrameLog.log}
    stored = resize_uint8(np.stack([frames[o.tobytes()] for o in next_obs]), tiny_clip.image_size)
    expected = reward(stored)
    assert np.std(expected) > 1e-4  # rewards differ between frames: a misplaced one would show
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert buffer.dones[:n].any() and buffer.timeouts[:n].any()


def test_resize_uint8_keeps_dtype_and_shape():
    frames = np.random.default_rng(0).integers(0, 255, (4, 48, 80, 3), dtype=np.uint8)
    out = resize_uint8(frames, 32)
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    flat = np.full((2, 48, 80, 3), 77, np.uint8)
    assert (resize_uint8(flat, 32) == 77).all()
    assert resize_uint8(frames, None) is not None and resize_uint8(frames, None).shape == frames.shape


def test_replay_buffer_roundtrip_saves_only_filled_rows(tmp_path):
    venv = make_training_env(_Factory(False), 2, seed=0, render_frames=False)
    model = SAC("MlpPolicy", venv, buffer_size=10_000, learning_starts=1000, policy_kwargs={"net_arch": [8]}, device="cpu")
    model.learn(40)
    venv.close()
    path = tmp_path / "rb.pkl"
    save_replay_buffer(model.replay_buffer, path)
    assert path.stat().st_size < model.replay_buffer.observations.nbytes / 10
    loaded = load_replay_buffer(path)
    for key in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(model.replay_buffer, key))
    assert (loaded.pos, loaded.full, loaded.buffer_size) == (
        model.replay_buffer.pos, model.replay_buffer.full, model.replay_buffer.buffer_size
    )


def test_checkpoint_files_are_published_whole(tmp_path):
    """Agent, buffer and state go into one folder, published whole; latest.json points at it."""
    from vlmrm.agents import latest_checkpoint, save_checkpoint

    venv = make_training_env(_Factory(False), 1, seed=0, render_frames=False)
    model = SAC("MlpPolicy", venv, buffer_size=1000, learning_starts=1000, policy_kwargs={"net_arch": [8]}, device="cpu")
    model.learn(10)
    venv.close()
    info = save_checkpoint(model, tmp_path, reason="final")
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["latest.json", "step_000000010"] and info["checkpoint"] == "step_000000010"  # no scratch left
    unit = sorted(p.name for p in (tmp_path / "checkpoints" / "step_000000010").iterdir())
    assert unit == ["agent.zip", "manifest.json", "replay_buffer.pkl", "state.pkl"]
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.step == 10 and SAC.load(ckpt.agent_path).num_timesteps == 10
    assert load_replay_buffer(ckpt.replay_buffer_path).pos == 10


def test_run_episodes_frames_returns_and_cut(tiny_clip):
    """Evaluation episodes (through the one rollout loop): reset frame + one per step, CLIP return."""
    from vlmrm.agents import run_episodes

    class Push:
        def predict(self, obs, deterministic=True):
            return 1, None

    env = gym.make("vlmrm/CartPole-v0", render_mode="rgb_array", width=32, height=32)
    reward = vlmrm.CLIPReward(tiny_clip, goal="pole upright")
    summary = run_episodes(Push(), env, 2, reward_model=reward, seed=0)
    for ep in summary.episodes:
        assert len(ep.frames) == ep.length + 1 and ep.clip_return is not None and ep.success is not None
        np.testing.assert_allclose(ep.clip_return, float(np.sum(reward(np.stack(ep.frames[1:])))), rtol=1e-5)
    cut = run_episodes(Push(), env, 1, keep_frames=False, seed=0, max_steps=3)
    assert cut.episodes[0].length == 3 and cut.episodes[0].frames == [] and cut.clip_return is None
    env.close()


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_graceful_stop_records_first_signal_and_aborts_on_second(first):
    term_before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        os.kill(os.getpid(), first)
        assert stop.requested and stop.name == signal.Signals(first).name
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == term_before


def test_agent_param_checks():
    check_agent_params("sac", {"algo": "sac", "gamma": 0.9, "train_freq": [1, "episode"]})
    with pytest.raises(ConfigError, match="did you mean agent.learning_rate"):
        check_agent_params("sac", {"lerning_rate": 1})
    with pytest.raises(ConfigError, match="set by the trainer"):
        check_agent_params("ppo", {"seed": 1})
    kw = agent_kwargs({"algo": "sac", "train_freq": [2, "episode"], "policy_kwargs": {"activation_fn": "relu"}})
    assert kw["train_freq"] == (2, "episode")
    import torch

    assert kw["policy_kwargs"]["activation_fn"] is torch.nn.ReLU
    with pytest.raises(ConfigError, match="continuous"):
        check_action_space("sac", gym.spaces.Discrete(2), "CartPole")
    with pytest.raises(ConfigError, match="discrete"):
        check_action_space("dqn", gym.spaces.Box(-1, 1, (2,)), "Humanoid")


def test_reward_section_loads_a_local_weights_file(saved_tuned_tiny):
    """`reward.pretrained=<file>` (e.g. a tuned checkpoint) is what the trainer's reward uses."""
    import numpy as np

    import vlmrm
    from vlmrm.agents.builders import build_reward_model

    tuned, path = saved_tuned_tiny(0.05)
    section = {"model": "vlmrm-tiny", "pretrained": str(path), "alpha": 0.5, "device": "cpu"}
    reward = build_reward_model(section, goal="pole upright", baseline="pole")
    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    want = vlmrm.CLIPReward(tuned, goal="pole upright", baseline="pole", alpha=0.5)(frames)
    np.testing.assert_allclose(reward(frames), want, atol=1e-6)
