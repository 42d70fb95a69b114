"""Episode relabelling with the reward model on a worker thread, or in a process of its own,
writes the rewards of the sequential path, bit for bit, and they are the CLIP rewards of the
stored frames."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from stable_baselines3 import DQN

import vlmrm
from vlmrm.agents import EnvFactory, EpisodeRelabeller, make_training_env, resize_uint8
from vlmrm.agents.relabel import TimedReward, chunk_frames_of, spare_core
from vlmrm.agents.relabel_process import RewardWorkerError


class ThreadLog:
    """A reward model that remembers which thread scored each call (forwards ``clip``)."""

    def __init__(self, reward) -> None:
        self.reward, self.threads, self.sizes = reward, [], []

    def __call__(self, frames):
        self.threads.append(threading.get_ident())
        self.sizes.append(len(frames))
        return self.reward(frames)

    def __getattr__(self, name):
        if name == "reward":  # not yet set (e.g. while unpickling in the reward process)
            raise AttributeError(name)
        return getattr(self.reward, name)


def _train(reward, overlap: bool | str | None, chunk_frames: int | None, timed: bool = False):
    factory = EnvFactory("vlmrm/CartPole-v0", episode_length=15, width=96, height=96)
    venv = make_training_env(factory, 3, seed=1, render_frames=True)
    model = DQN("MlpPolicy", venv, buffer_size=1000, learning_starts=20, train_freq=7, gradient_steps=2,
                batch_size=8, policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    logged = ThreadLog(reward)
    relabeller = EpisodeRelabeller(TimedReward(logged) if timed else logged, overlap=overlap,
                                   chunk_frames=chunk_frames)
    try:
        model.learn(total_timesteps=3 * 60, callback=relabeller)
        relabeller.flush()
    finally:
        venv.close()
    if timed:
        logged.stats = relabeller.reward_model.stats
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


def test_relabelling_in_a_process_equals_sequential(tiny_clip):
    reward = vlmrm.CLIPReward(tiny_clip, goal="pole upright", baseline="pole and cart", alpha=0.5,
                              batch_size=5)
    seq, seq_obs, _ = _train(reward, overlap=False, chunk_frames=10)
    par, par_obs, log = _train(reward, overlap="process", chunk_frames=10, timed=True)
    # The child scored the chunks handed over as the envs stepped; this process only what was
    # left when each rollout ended (here the last, incomplete chunk), with the same calls.
    assert 0 < sum(log.sizes) < par.size // 2
    np.testing.assert_array_equal(par_obs, seq_obs)
    np.testing.assert_array_equal(par, seq)
    assert not np.isnan(par).any() and np.std(par) > 1e-4
    assert log.stats.frames == par.size and log.stats.seconds > 0  # the child's work is counted


class SlowInTheChild:
    """A reward model that takes 0.2 s a call in the reward process (picklable): the chunks
    pile up there, as with a reward model slower than the env loop."""

    def __init__(self, reward) -> None:
        self.reward, self.parent = reward, os.getpid()

    def __call__(self, frames):
        if os.getpid() != self.parent:
            time.sleep(0.2)
        return self.reward(frames)

    def __getattr__(self, name):  # the CLIP's input size, for the stored frames
        if name == "reward":  # not yet set (while unpickling)
            raise AttributeError(name)
        return getattr(self.reward, name)


def test_what_is_left_at_a_rollouts_end_is_shared_with_this_process(tiny_clip):
    """The child holds two chunks; the newest of the others are scored here while it works,
    and the rewards are those of scoring everything in order on one thread."""
    reward = vlmrm.CLIPReward(tiny_clip, goal="pole upright", baseline="pole and cart", alpha=0.5,
                              batch_size=4)
    seq, _, _ = _train(reward, overlap=False, chunk_frames=4)
    shared, _, log = _train(SlowInTheChild(reward), overlap="process", chunk_frames=4)
    np.testing.assert_array_equal(shared, seq)
    # 21 frames a rollout: chunks 0-4 and one frame. The child is busy with 0 and 1 for
    # 0.4 s; in that time this process scores the frame left and chunks 4, 3 and 2.
    assert log.sizes.count(4) >= 3 * (shared.size // 21 - 1)
    assert log.sizes.count(4) < shared.size // 4


class InTheChild:
    """A picklable reward model that scores zeros in the process that made it and does
    ``in_child`` in the reward process (where a rollout's first chunks are always scored)."""

    def __init__(self) -> None:
        self.parent = os.getpid()

    def __call__(self, frames):
        if os.getpid() != self.parent:
            self.in_child()
        return np.zeros(len(frames), dtype=np.float32)


class Broken(InTheChild):
    """A reward model that fails in the child process."""

    def in_child(self):
        raise RuntimeError("reward model failed in the child")


class Dies(InTheChild):
    """A reward model whose process dies on its first call."""

    def in_child(self):
        os._exit(3)


def _learn_with(reward, frames: int = 40):
    factory = EnvFactory("vlmrm/CartPole-v0", episode_length=15, width=64, height=64)
    venv = make_training_env(factory, 2, seed=1, render_frames=True)
    model = DQN("MlpPolicy", venv, buffer_size=1000, learning_starts=20, train_freq=7,
                policy_kwargs={"net_arch": [8]}, seed=0, device="cpu")
    try:
        model.learn(total_timesteps=frames, callback=EpisodeRelabeller(reward, frame_size=32, chunk_frames=4,
                                                                       overlap="process"))
    finally:
        venv.close()


def test_a_failing_reward_in_the_process_reaches_the_training_loop():
    with pytest.raises(RewardWorkerError, match="reward model failed in the child"):
        _learn_with(Broken())


def test_a_reward_process_that_dies_is_one_error():
    with pytest.raises(RewardWorkerError, match=r"process stopped \(exit code 3\)"):
        _learn_with(Dies())


def test_an_unknown_overlap_is_refused(tiny_clip):
    with pytest.raises(vlmrm.errors.ConfigError, match="overlap must be"):
        EpisodeRelabeller(vlmrm.CLIPReward(tiny_clip, goal="pole upright"), overlap="fork")


def test_training_with_the_reward_in_a_process_stores_the_rewards_of_the_main_thread(tmp_path, monkeypatch):
    from vlmrm.agents import latest_checkpoint, load_replay_buffer
    from vlmrm.agents.relabel_process import ProcessScorer
    from vlmrm.train import main as train_main

    children = []
    start = ProcessScorer.start

    def counted(self):
        start(self)
        children.append(self._proc.pid)

    monkeypatch.setattr(ProcessScorer, "start", counted)

    def buffer(worker: str):
        out = tmp_path / worker
        argv = ["env=CartPole", "reward=tiny", "total_steps=160", "agent.learning_starts=40",
                "agent.train_freq=10", "agent.gradient_steps=2", "checkpoint_every=160", "eval.every=0",
                "seed=3", f"reward.relabel_worker={worker}", f"out={out}", "progress=false"]
        assert train_main(argv) == 0
        (run,) = [p for p in out.iterdir() if p.is_dir()]
        return load_replay_buffer(latest_checkpoint(run).replay_buffer_path)

    off = buffer("off")
    assert children == []
    process = buffer("process")
    assert len(set(children)) >= 1  # scored in a child process
    assert process.pos == off.pos == 20  # 160 steps of 8 sub-envs
    np.testing.assert_array_equal(process.rewards[:20], off.rewards[:20])
    assert not np.isnan(process.rewards[:20]).any() and np.std(process.rewards[:20]) > 1e-5


def test_auto_puts_a_small_cpu_tower_of_a_long_run_in_a_process(tiny_clip):
    from vlmrm.agents.relabel import PROCESS_MIN_STEPS, auto_overlap

    tiny = TimedReward(vlmrm.CLIPReward(tiny_clip, goal="pole upright"))
    assert auto_overlap(tiny, PROCESS_MIN_STEPS, spare=True) == "process"
    assert auto_overlap(tiny, PROCESS_MIN_STEPS - 1, spare=True) is True  # the start would be much of a short run
    assert auto_overlap(tiny, 10 * PROCESS_MIN_STEPS, spare=False) is False  # no idle core: no worker at all
    assert auto_overlap(lambda frames: np.zeros(len(frames)), PROCESS_MIN_STEPS, spare=True) is True  # no tower known


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_auto_keeps_a_large_tower_on_a_thread(precision):
    """ViT-B-32's tower releases the GIL in long kernels; a process would hold a second copy.
    Its int8 form counts too (its packed weights are no ``parameters()``)."""
    from vlmrm.agents.relabel import auto_overlap

    clip = vlmrm.load_clip("ViT-B-32", device="cpu", precision=precision)  # random weights: no download
    assert auto_overlap(vlmrm.CLIPReward(clip, goal="a pole upright"), 10**7, spare=True) is True


def test_the_trainer_says_when_auto_chose_the_reward_process(tiny_clip, monkeypatch, capsys):
    from vlmrm.agents import compose_train_config
    from vlmrm.agents.runner import relabel_overlap

    monkeypatch.setattr("vlmrm.agents.relabel.spare_core", lambda: True)
    reward = TimedReward(vlmrm.CLIPReward(tiny_clip, goal="pole upright"))
    long_run = ["env=CartPole", "reward=tiny", "total_steps=3000000"]
    assert relabel_overlap(compose_train_config(long_run), reward) == "process"
    assert capsys.readouterr().err.count("in a process of its own") == 1
    assert relabel_overlap(compose_train_config([*long_run, "reward.relabel_worker=thread"]), reward) is True
    assert relabel_overlap(compose_train_config(["env=CartPole", "reward=tiny", "total_steps=2000"]), reward) is True
    assert "process" not in capsys.readouterr().err
