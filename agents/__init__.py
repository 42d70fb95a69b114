"""Stable-Baselines3 agents trained on CLIP rewards (installed as ``vlmrm.agents``).

- :mod:`~vlmrm.agents.settings`: the settings of ``python -m vlmrm.train`` (torch-free);
- :mod:`~vlmrm.agents.config`: Hydra composition of ``configs/``, checks, resume;
- :mod:`~vlmrm.agents.runner`: one training job (envs, agent, callbacks, ``learn``);
- :mod:`~vlmrm.agents.api`: ``train_agent`` (Python API), :mod:`~vlmrm.agents.load`: ``load_run``;
- :mod:`~vlmrm.agents.gym_envs`: ``env=<any Gymnasium id>``; :mod:`~vlmrm.agents.hparams`: rl_zoo3 files;
- :mod:`~vlmrm.agents.short_runs`: short runs scaled to learn (``-m`` sweeps: :mod:`vlmrm.sweep`);
- :mod:`~vlmrm.agents.loggers`: TensorBoard and W&B; :mod:`~vlmrm.agents.progress`: the progress bar;
- :mod:`~vlmrm.agents.builders`: SAC / TD3 / DDPG / DQN / PPO / A2C and the CLIP reward from config sections;
- :mod:`~vlmrm.agents.vec_env`: vectorised (optionally subprocess) training envs;
- :mod:`~vlmrm.agents.relabel`: episode-batched relabelling of replay-buffer rewards;
- :mod:`~vlmrm.agents.callbacks`: stop-on-signal, episode stats, eval videos, checkpoints;
- :mod:`~vlmrm.agents.checkpoint`, :mod:`~vlmrm.agents.rollout` (graceful stop: :mod:`vlmrm.runtime.stop`).

The package face is lazy, like ``vlmrm``'s: importing ``vlmrm.agents.settings`` (what
``python -m vlmrm.train --help`` needs) loads neither torch nor Stable-Baselines3; each
name below imports its module on first use.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

#: module → the public names it defines
_EXPORTS = {
    "vlmrm.agents.builders": (
        "ALGORITHMS", "OFF_POLICY", "agent_kwargs", "build_agent", "build_reward_model",
        "check_action_space", "check_agent_params", "load_agent",
    ),
    "vlmrm.agents.callbacks": ("EpisodeStats", "EvalVideo", "PeriodicCheckpoint", "StopOnSignal"),
    "vlmrm.agents.checkpoint": (
        "find_checkpoint", "latest_checkpoint", "load_replay_buffer", "save_checkpoint",
        "save_replay_buffer",
    ),
    "vlmrm.agents.config": (
        "compose_train_config", "config_dir", "goal_prompt", "load_resume_config",
        "validate_train_config",
    ),
    "vlmrm.agents.api": ("train_agent",),
    "vlmrm.agents.load": ("LoadedRun", "load_run", "load_run_config"),
    "vlmrm.agents.relabel": ("EpisodeRelabeller", "TimedReward", "resize_uint8"),
    "vlmrm.agents.rollout": ("EvalSummary", "run_episodes"),
    "vlmrm.agents.vec_env": ("EnvFactory", "env_factory", "make_training_env"),
    "vlmrm.agents.settings": ("TrainSettings", "RewardSettings"),
    "vlmrm.runtime.stop": ("GracefulStop",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
