"""``reward.terminal=absorbing``: a terminated episode's last state keeps paying its reward
until the time limit (replay-buffer rewards against a NumPy reference), and its checks."""

from __future__ import annotations

import numpy as np
import pytest
from _train_rewards import TINY_CARTPOLE, numpy_reward, record_reward_models
from omegaconf import OmegaConf

import vlmrm
from vlmrm.agents import compose_train_config, latest_checkpoint, load_replay_buffer
from vlmrm.agents.relabel import absorbing_bonus
from vlmrm.errors import ConfigError
from vlmrm.train import main as train_main


def test_absorbing_bonus_is_the_discounted_sum_of_the_steps_left():
    for reward, left, gamma in ((0.3, 5, 0.9), (-0.2, 1, 0.99), (0.7, 998, 0.9999), (0.5, 4, 1.0)):
        expected = sum(gamma**k * reward for k in range(1, left + 1))
        assert absorbing_bonus(reward, left, gamma) == pytest.approx(expected, rel=1e-9)
    assert absorbing_bonus(0.4, 0, 0.9) == 0.0 and absorbing_bonus(0.4, -3, 0.9) == 0.0


def test_env_defaults_and_checks():
    assert compose_train_config(["env=MountainCar", "reward=tiny"]).reward.terminal == "absorbing"
    for env in ("CartPole", "Humanoid"):
        assert compose_train_config([f"env={env}", "reward=tiny"]).reward.terminal == "end"
    with pytest.raises(ConfigError, match="reward.terminal"):
        compose_train_config(["env=CartPole", "reward=tiny", "reward.terminal=forever"])
    # on-policy agents score every step: the env's default is noted and not applied
    assert compose_train_config(["env=MountainCar", "reward=tiny", "agent=a2c"]).reward.terminal == "absorbing"


def test_terminal_transitions_pay_the_last_state_until_the_time_limit(tmp_path, monkeypatch):
    built = record_reward_models(monkeypatch)
    # CartPole ends when the pole falls (terminations) or after env.episode_length steps (truncations)
    args = [*TINY_CARTPOLE, "reward.terminal=absorbing", "env.episode_length=14", "agent.gamma=0.9",
            "total_steps=150", f"out={tmp_path}", "run_name=absorbing"]
    assert train_main(args) == 0
    run_dir = tmp_path / "absorbing"
    cfg = OmegaConf.load(run_dir / "config.yaml")
    buffer = load_replay_buffer(latest_checkpoint(run_dir).replay_buffer_path, device="cpu")
    n = buffer.pos
    dones, timeouts = buffer.dones[:n, 0].astype(bool), buffer.timeouts[:n, 0].astype(bool)
    assert (dones & ~timeouts).sum() >= 2 and (dones & timeouts).sum() >= 1  # both kinds of ending occurred

    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    frames = np.concatenate(built[0].calls)
    raw = numpy_reward(clip, frames, [cfg.env.goal_template.format(goal=cfg.goal)], [cfg.baseline],
                       cfg.reward.alpha)
    expected, length = raw.copy(), 0
    for t in range(n):
        length += 1
        if dones[t]:
            if not timeouts[t]:
                expected[t] += sum(0.9**k * raw[t] for k in range(1, 14 - length + 1))
            length = 0
    np.testing.assert_allclose(buffer.rewards[:n, 0], expected, rtol=0, atol=5e-5)
    assert not np.allclose(expected, raw)  # the bonus was paid somewhere


def test_per_step_scoring_notes_that_absorbing_does_not_apply(tmp_path, capsys):
    args = [*TINY_CARTPOLE, "agent=ppo", "agent.n_steps=32", "agent.batch_size=32", "reward.terminal=absorbing",
            "total_steps=32", f"out={tmp_path}", "run_name=ppo"]
    assert train_main(args) == 0
    err = capsys.readouterr().err
    assert err.count("note: reward.terminal=absorbing") == 1 and "ppo scores every step" in err
