"""Stable-Baselines3 agents trained on CLIP rewards (installed as ``vlmrm.agents``).

- :mod:`~vlmrm.agents.settings`: the settings of ``python -m vlmrm.train`` (torch-free);
- :mod:`~vlmrm.agents.config`: Hydra composition of ``configs/``, checks, resume;
- :mod:`~vlmrm.agents.runner`: one training job (envs, agent, callbacks, ``learn``);
- :mod:`~vlmrm.agents.builders`: SAC / PPO / DQN and the CLIP reward from config sections;
- :mod:`~vlmrm.agents.vec_env`: vectorised (optionally subprocess) training envs;
- :mod:`~vlmrm.agents.relabel`: episode-batched relabelling of replay-buffer rewards;
- :mod:`~vlmrm.agents.callbacks`: stop-on-signal, episode stats, eval videos, checkpoints;
- :mod:`~vlmrm.agents.checkpoint`, :mod:`~vlmrm.agents.rollout` (graceful stop: :mod:`vlmrm.runtime.stop`).

The package face is lazy, like ``vlmrm``'s: importing ``vlmrm.agents.settings`` (what
``python -m vlmrm.train --help`` needs) loads neither torch nor Stable-Baselines3; each
name below imports its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name → the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("ALGORITHMS", "OFF_POLICY", "agent_kwargs", "build_agent", "build_reward_model",
         "check_action_space", "check_agent_params", "load_agent"),
        "vlmrm.agents.builders",
    ),
    **dict.fromkeys(("EpisodeStats", "EvalVideo", "PeriodicCheckpoint", "StopOnSignal"), "vlmrm.agents.callbacks"),
    **dict.fromkeys(
        ("find_checkpoint", "latest_checkpoint", "load_replay_buffer", "save_checkpoint", "save_replay_buffer"),
        "vlmrm.agents.checkpoint",
    ),
    **dict.fromkeys(
        ("compose_train_config", "config_dir", "goal_prompt", "load_resume_config", "validate_train_config"),
        "vlmrm.agents.config",
    ),
    **dict.fromkeys(("EpisodeRelabeller", "TimedReward", "resize_uint8"), "vlmrm.agents.relabel"),
    **dict.fromkeys(("EvalSummary", "run_episodes"), "vlmrm.agents.rollout"),
    **dict.fromkeys(("EnvFactory", "env_factory", "make_training_env"), "vlmrm.agents.vec_env"),
    **dict.fromkeys(("TrainSettings", "RewardSettings"), "vlmrm.agents.settings"),
    "GracefulStop": "vlmrm.runtime.stop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlmrm.agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
