"""Centred and scaled CLIP rewards in ``vlmrm.train`` (``reward.center``, ``reward.scale``):
the offset against NumPy on the same random-policy frames, both relabel modes, resume."""

from __future__ import annotations

import numpy as np
import pytest
from _train_rewards import (
    TINY_CARTPOLE,
    buffer_rewards,
    numpy_reward,
    random_policy_frames,
    record_reward_models,
)
from omegaconf import OmegaConf

import vlmrm
from vlmrm.agents import compose_train_config
from vlmrm.agents.vec_env import env_factory
from vlmrm.errors import ConfigError
from vlmrm.train import main as train_main

CENTRED = [*TINY_CARTPOLE, "reward.center=true", "reward.center_frames=300", "reward.scale=2.5", "seed=3"]


def _split(calls: list[np.ndarray], n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The reward calls that scored the first ``n`` frames (the centring ones), and the rest."""
    count = 0
    for i, batch in enumerate(calls):
        if count == n:
            return calls[:i], calls[i:]
        count += len(batch)
    assert count == n, "the centring frames must be scored in whole calls, before any other"
    return calls, []


def _goal_and_baseline(cfg) -> tuple[list[str], list[str]]:
    return [cfg.env.goal_template.format(goal=cfg.goal)], [cfg.baseline]


def test_env_defaults_and_checks():
    assert compose_train_config(["env=MountainCar", "reward=tiny"]).reward.center is True
    assert compose_train_config(["env=MountainCar", "reward=tiny", "reward.center=false"]).reward.center is False
    for env in ("CartPole", "Humanoid"):
        cfg = compose_train_config([f"env={env}", "reward=tiny"])
        assert cfg.reward.center is False and cfg.reward.scale == 1.0 and cfg.reward.offset is None
    cfg = compose_train_config(["env=CartPole", "reward=tiny", "reward.center=true", "reward.center_frames=64"])
    assert cfg.reward.center is True and cfg.reward.center_frames == 64
    for bad, words in ((["reward.center_frames=0"], "reward.center_frames"), (["reward.scale=0"], "reward.scale=0"),
                       (["reward.scale=abc"], "reward.scale"), (["reward.offset=0.5"], "reward.center=true"),
                       (["reward.center=maybe"], "reward.center"),
                       (["reward=ground_truth", "reward.center=true"], "ground_truth")):
        with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("=", "=")):
            compose_train_config(["env=CartPole", "reward=tiny", *bad])


def test_episode_relabelling_uses_the_centred_scaled_reward_and_resume_keeps_the_offset(tmp_path, monkeypatch, capsys):
    built = record_reward_models(monkeypatch)
    assert train_main([*CENTRED, "total_steps=150", f"out={tmp_path}", "run_name=centred"]) == 0
    run_dir = tmp_path / "centred"
    cfg = OmegaConf.load(run_dir / "config.yaml")
    offset = cfg.reward.offset
    assert isinstance(offset, float)
    assert capsys.readouterr().err.count("reward centring: offset") == 1

    # The offset is the mean reward of 300 seeded random-policy frames of the training env.
    env = env_factory(cfg.env)()
    frames = random_policy_frames(env, 300, seed=3)
    env.close()
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    goals, baselines = _goal_and_baseline(cfg)
    reference = numpy_reward(clip, frames, goals, baselines, cfg.reward.alpha)
    assert offset == pytest.approx(reference.mean(), abs=1e-6)
    (recorder,) = built
    centring, training = _split(recorder.calls, 300)
    np.testing.assert_array_equal(np.concatenate(centring), frames)  # the same frames, not just the same mean

    # The relabelled rewards are scale * (r - offset) of the frames of the training steps.
    trained = np.concatenate(training)
    expected = 2.5 * (numpy_reward(clip, trained, goals, baselines, cfg.reward.alpha) - offset)
    np.testing.assert_allclose(buffer_rewards(run_dir), expected, rtol=0, atol=5e-5)
    assert abs(expected.mean()) < 2.5 * 0.05 and np.ptp(expected) > 1e-4  # centred, not flat

    # logged once to TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(next((run_dir / "tb").glob("events.out.tfevents.*"))))
    acc.Reload()
    assert [e.value for e in acc.Scalars("reward/offset")] == [pytest.approx(offset, abs=1e-6)]

    # Resume: the saved offset is used, no frames are collected again.
    built.clear()
    assert train_main([f"resume={run_dir}", "total_steps=200", "progress=false"]) == 0
    assert "offset" in capsys.readouterr().err
    resumed = np.concatenate(built[0].calls)
    assert len(resumed) == 50  # only the 50 new training steps were scored
    assert OmegaConf.load(run_dir / "config.yaml").reward.offset == offset
    new = buffer_rewards(run_dir)[150:]
    np.testing.assert_allclose(
        new, 2.5 * (numpy_reward(clip, resumed, goals, baselines, cfg.reward.alpha) - offset), rtol=0, atol=5e-5)

    # vlmrm.evaluate's run reward is the training reward (centred and scaled)
    with vlmrm.load_run(run_dir) as run:
        np.testing.assert_allclose(run.reward(trained[:8]), expected[:8], rtol=0, atol=5e-5)


def test_step_scoring_uses_the_centred_scaled_reward(tmp_path, monkeypatch):
    """PPO (rewards scored every step in the vector env) sees scale * (r - offset) too."""
    from vlmrm.agents import runner

    built = record_reward_models(monkeypatch)
    seen: list[np.ndarray] = []

    class Recording(runner.CLIPRewardVecEnvWrapper):
        def step_wait(self):
            obs, rewards, dones, infos = super().step_wait()
            seen.append(np.array(rewards, dtype=np.float64))
            return obs, rewards, dones, infos

    monkeypatch.setattr(runner, "CLIPRewardVecEnvWrapper", Recording)
    argv = [*CENTRED, "agent=ppo", "agent.n_steps=32", "agent.batch_size=32", "total_steps=64",
            "reward.center_frames=40", f"out={tmp_path}", "run_name=ppo"]
    assert train_main(argv) == 0
    cfg = OmegaConf.load(tmp_path / "ppo" / "config.yaml")
    assert cfg.reward.relabel == "step"
    centring, steps = _split(built[0].calls, 40)
    centring = np.concatenate(centring)
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    goals, baselines = _goal_and_baseline(cfg)
    assert cfg.reward.offset == pytest.approx(
        numpy_reward(clip, centring, goals, baselines, cfg.reward.alpha).mean(), abs=1e-6)
    raw = numpy_reward(clip, np.concatenate(steps), goals, baselines, cfg.reward.alpha)
    np.testing.assert_allclose(np.concatenate(seen), 2.5 * (raw - cfg.reward.offset), rtol=0, atol=5e-5)


def test_scale_alone_and_offset_given(tmp_path, monkeypatch):
    """reward.scale without centring multiplies; a given reward.offset is used without measuring."""
    built = record_reward_models(monkeypatch)
    assert train_main([*TINY_CARTPOLE, "total_steps=60", "reward.scale=-3", f"out={tmp_path}", "run_name=s"]) == 0
    cfg = OmegaConf.load(tmp_path / "s" / "config.yaml")
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    goals, baselines = _goal_and_baseline(cfg)
    raw = numpy_reward(clip, np.concatenate(built[0].calls), goals, baselines, cfg.reward.alpha)
    np.testing.assert_allclose(buffer_rewards(tmp_path / "s"), -3 * raw, rtol=0, atol=5e-5)

    built.clear()
    assert train_main([*TINY_CARTPOLE, "total_steps=60", "reward.center=true", "reward.offset=0.25",
                       f"out={tmp_path}", "run_name=o"]) == 0
    frames = np.concatenate(built[0].calls)
    assert len(frames) == 60  # no centring frames were collected
    raw = numpy_reward(clip, frames, goals, baselines, cfg.reward.alpha)
    np.testing.assert_allclose(buffer_rewards(tmp_path / "o"), raw - 0.25, rtol=0, atol=5e-5)
