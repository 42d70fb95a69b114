"""Short runs that still learn: warm-up and rollout sizes scaled down to ``total_steps``.

The tuned presets are sized for millions of steps: CartPole's DQN starts learning after
75,000 steps and trains every 200 steps per sub-env (1,600 with 8 sub-envs); PPO
collects 2,048 steps per sub-env before its first update. A smoke run of 2,000 steps
would then never update the agent and log no ``train/*`` scalar, or (PPO) silently run a
whole rollout of 16,384 steps. :func:`fit_short_run` scales what does not fit, except
values the user set on the command line, and prints one notice that says what changed:

* off-policy (sac, td3, ddpg, dqn): ``learning_starts`` to a tenth of the run, and
  ``train_freq`` (with ``gradient_steps`` in proportion) so that at least about four
  training phases happen; DQN's ``target_update_interval`` to the run's length / 4;
* on-policy (ppo, a2c): ``n_steps`` so that one rollout of all sub-envs covers the run
  (``batch_size`` no larger than that rollout).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Collection

from omegaconf import DictConfig, open_dict

from vlmrm.agents.settings import OFF_POLICY


def _freq_steps(freq) -> int | None:
    """``train_freq`` in steps per sub-env, or ``None`` when it counts episodes."""
    if isinstance(freq, (list, tuple)):
        return int(freq[0]) if str(freq[1]) == "step" else None
    return int(freq)


def short_run_changes(cfg: DictConfig, user_keys: Collection[str]) -> dict[str, object]:
    """``{"agent.<key>": new value}`` for what a run of ``total_steps`` needs scaled."""
    agent, total, n_envs = cfg.agent, int(cfg.total_steps), int(cfg.n_envs)
    changes: dict[str, object] = {}

    def free(key: str) -> bool:
        return f"agent.{key}" not in user_keys and key in agent

    if agent.algo in OFF_POLICY:
        starts = int(agent.get("learning_starts", 0))
        if free("learning_starts") and starts >= total // 2:
            starts = max(1, total // 10)
            changes["agent.learning_starts"] = starts
        steps_per_env = max(1, (total - starts) // n_envs)
        freq = _freq_steps(agent.get("train_freq", 1))
        if free("train_freq") and freq is not None and freq > max(1, steps_per_env // 4):
            new = max(1, steps_per_env // 4)
            changes["agent.train_freq"] = new
            grad = int(agent.get("gradient_steps", 1))
            if free("gradient_steps") and grad > 0:
                changes["agent.gradient_steps"] = max(1, round(grad * new / freq))
        target = agent.get("target_update_interval")
        if free("target_update_interval") and target is not None and int(target) > total // 4:
            changes["agent.target_update_interval"] = max(1, total // 4)
    else:
        n_steps = int(agent.get("n_steps", 1))
        if free("n_steps") and n_steps * n_envs > total:
            n_steps = max(2, math.ceil(total / n_envs))
            changes["agent.n_steps"] = n_steps
            batch = agent.get("batch_size")
            if free("batch_size") and batch is not None and int(batch) > n_steps * n_envs:
                changes["agent.batch_size"] = n_steps * n_envs
    return changes


def planned_steps(cfg: DictConfig) -> int:
    """The step count a run of ``total_steps`` ends at: sub-envs step together, and an
    on-policy agent finishes its rollout (``n_steps × n_envs`` steps)."""
    total, n_envs = int(cfg.total_steps), int(cfg.n_envs)
    unit = n_envs if cfg.agent.algo in OFF_POLICY else n_envs * int(cfg.agent.get("n_steps", 1))
    return math.ceil(total / unit) * unit


def fit_short_run(cfg: DictConfig, user_keys: Collection[str], say=None) -> dict[str, object]:
    """Apply :func:`short_run_changes` to ``cfg`` with one notice; returns the changes.

    Also says so when the run cannot end exactly at ``total_steps`` (see :func:`planned_steps`).
    """
    changes = short_run_changes(cfg, user_keys)
    with open_dict(cfg):
        for key, value in changes.items():
            cfg.agent[key.split(".", 1)[1]] = value
    planned = planned_steps(cfg)
    ends = f"; the run ends at step {planned}" if planned != int(cfg.total_steps) else ""
    if changes:
        text = ", ".join(f"{k}={v}" for k, v in changes.items())
        (say or _say)(f"short run ({cfg.total_steps} steps): scaled {text} so that it learns{ends} "
                      "(set them on the command line to keep your own)")
    elif ends:
        unit = "n_envs" if cfg.agent.algo in OFF_POLICY else "a rollout (agent.n_steps x n_envs)"
        (say or _say)(f"total_steps={cfg.total_steps} is no multiple of {unit}{ends}")
    never = never_trains(cfg)
    if never:
        (say or _say)(f"warning: {never}")
    return changes


def never_trains(cfg: DictConfig) -> str:
    """Why an off-policy run will never update its agent (its own ``learning_starts`` is at or
    past the run's last step: values the user set, e.g. from an rl_zoo3 file, are kept), or ""."""
    if cfg.agent.algo not in OFF_POLICY:
        return ""
    starts, planned = int(cfg.agent.get("learning_starts", 0) or 0), planned_steps(cfg)
    if starts < planned:
        return ""
    return (f"agent.learning_starts={starts} is not below the run's {planned} steps, so the agent "
            f"never trains; set agent.learning_starts={max(1, planned // 10)} (or leave it out of "
            f"agent.config and the command line to have it scaled), or raise total_steps above {starts}")


def _say(msg: str) -> None:
    if os.environ.get("RANK", "0") not in ("", "0"):  # under torchrun every rank composes the config: once
        return
    print(f"[vlmrm.train] {msg}", file=sys.stderr, flush=True)
