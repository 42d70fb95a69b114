"""Episode relabelling with the reward model on a worker thread writes the rewards of the
sequential path, bit for bit, and they are the CLIP rewards of the stored frames."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from stable_baselines3 import DQN

import vlmrm
from vlmrm.agents import EnvFactory, EpisodeRelabeller, make_training_env, resize_uint8
from vlmrm.agents.relabel import chunk_frames_of, spare_core


class ThreadLog:
    """A reward model that remembers which thread scored each call (forwards ``clip``)."""

    def __init__(self, reward) -> None:
        self.reward, self.threads, self.sizes = reward, [], []

    def __call__(self, frames):
        self.threads.append(threading.get_ident())
        self.sizes.append(len(frames))
        return self.reward(frames)

    def __getattr__(self, name):
        return getattr(self.reward, name)


def _train(reward, overlap: bool, chunk_frames: int | None):
    factory = EnvFactory("vlmrm/CartPole-v0", episode_length=15, width=96, height=96)
    venv = make_training_env(factory, 3, seed=1, render_frames=True)
    model = DQN("MlpPolicy", venv, buffer_size=1000, learning_starts=20, train_freq=7, gradient_steps=2,
                batch_size=8, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    logged = ThreadLog(reward)
    relabeller = EpisodeRelabeller(logged, overlap=overlap, chunk_frames=chunk_frames)
    model.learn(total_timesteps=3 * 60, callback=relabeller)
    relabeller.flush()
    venv.close()
    buffer = model.replay_buffer
    n = buffer.buffer_size if buffer.full else buffer.pos
    return buffer.rewards[:n].copy(), buffer.next_observations[:n].copy(), logged


@pytest.mark.parametrize("chunk_frames", [10, None], ids=["chunks-of-10", "default-chunks"])
def test_overlapped_relabelling_equals_sequential(tiny_clip, chunk_frames):
    reward = vlmrm.CLIPReward(tiny_clip, goal="pole upright", baseline="pole and cart", alpha=0.5,
                              batch_size=5)
    seq, seq_obs, seq_log = _train(reward, overlap=False, chunk_frames=chunk_frames)
    par, par_obs, par_log = _train(reward, overlap=True, chunk_frames=chunk_frames)

    main = threading.get_ident()
    assert set(seq_log.threads) == {main}
    assert seq_log.sizes == par_log.sizes  # the same calls, in the same order
    chunk = chunk_frames or 5  # default: one tower batch
    assert seq_log.sizes.count(chunk) >= 3 and max(seq_log.sizes) == chunk
    # The complete chunks were scored on the worker thread, beside the env loop.
    assert any(t != main for t in par_log.threads)
    np.testing.assert_array_equal(par_obs, seq_obs)  # the same trajectory ...
    np.testing.assert_array_equal(par, seq)  # ... and the same rewards, exactly
    assert not np.isnan(par).any() and np.std(par) > 1e-4
    # Independent reference: the reward of the frame of each transition's next state,
    # rendered again and resized as the relabeller stores it.
    env = EnvFactory("vlmrm/CartPole-v0", episode_length=15, width=96, height=96)()
    env.reset(seed=0)
    frames = []
    for obs in par_obs.reshape(-1, 4):
        env.unwrapped.state = obs.astype(np.float64)
        frames.append(env.render())
    expected = reward(resize_uint8(np.stack(frames), tiny_clip.image_size))
    np.testing.assert_allclose(par.reshape(-1), expected, rtol=0, atol=1e-5)


def test_chunk_size_is_a_multiple_of_the_tower_batch(tiny_clip):
    reward = vlmrm.CLIPReward(tiny_clip, goal="pole upright", batch_size=48)
    assert chunk_frames_of(reward) == 48
    assert chunk_frames_of(reward, target=256) == 48 * 5
    assert chunk_frames_of(vlmrm.CLIPReward(tiny_clip, goal="pole upright")) == tiny_clip.batch_size
    assert chunk_frames_of(lambda frames: np.zeros(len(frames))) == 64
    with pytest.raises(vlmrm.errors.ConfigError, match="chunk_frames must be >= 1"):
        EpisodeRelabeller(reward, chunk_frames=0)


def test_worker_error_reaches_the_training_loop(tiny_clip):
    def broken(frames):
        raise RuntimeError("reward model failed")

    factory = EnvFactory("vlmrm/CartPole-v0", episode_length=15, width=64, height=64)
    venv = make_training_env(factory, 2, seed=1, render_frames=True)
    model = DQN("MlpPolicy", venv, buffer_size=1000, learning_starts=20, train_freq=7,
                policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    with pytest.raises(RuntimeError, match="reward model failed"):
        model.learn(total_timesteps=40, callback=EpisodeRelabeller(broken, frame_size=32, chunk_frames=4))
    venv.close()


def test_default_overlaps_only_with_an_idle_core(tiny_clip, monkeypatch):
    assert spare_core(cores=2, load=1.0)  # this process alone on 2 cores
    assert not spare_core(cores=2, load=1.6)  # another job beside it
    assert not spare_core(cores=1, load=0.0)  # nothing to overlap on
    assert spare_core(cores=16, load=9.0) and not spare_core(cores=16, load=15.7)
    reward = vlmrm.CLIPReward(tiny_clip, goal="pole upright", batch_size=5)
    for load, expected in ((0.2, True), (40.0, False)):
        monkeypatch.setattr("os.getloadavg", lambda load=load: (load, load, load))
        monkeypatch.setattr("vlmrm.agents.config.available_cores", lambda: 2)
        rewards, _, log = _train(reward, overlap=None, chunk_frames=10)
        main = threading.get_ident()
        assert any(t != main for t in log.threads) is expected
        assert not np.isnan(rewards).any()
