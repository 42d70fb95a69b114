"""Stable-Baselines3 agents trained on CLIP rewards (installed as ``vlmrm.agents``).

- :mod:`~vlmrm.agents.config`: the Hydra config tree of ``python -m vlmrm.train``;
- :mod:`~vlmrm.agents.builders`: SAC / PPO / DQN and the CLIP reward from config sections;
- :mod:`~vlmrm.agents.vec_env`: vectorised (optionally subprocess) training envs;
- :mod:`~vlmrm.agents.relabel`: episode-batched relabelling of replay-buffer rewards;
- :mod:`~vlmrm.agents.callbacks`: stop-on-signal, episode stats, eval videos, checkpoints;
- :mod:`~vlmrm.agents.checkpoint`, :mod:`~vlmrm.agents.rollout` (graceful stop: :mod:`vlmrm.runtime.stop`).
"""

# torchvision before anything that may create a MuJoCo/EGL context (see vlmrm/__init__.py).
import torchvision  # noqa: F401, I001

from vlmrm.agents.builders import (
    ALGORITHMS,
    OFF_POLICY,
    agent_kwargs,
    build_agent,
    build_reward_model,
    check_action_space,
    check_agent_params,
    load_agent,
)
from vlmrm.agents.callbacks import EpisodeStats, EvalVideo, PeriodicCheckpoint, StopOnSignal
from vlmrm.agents.checkpoint import (
    find_checkpoint,
    latest_checkpoint,
    load_replay_buffer,
    save_checkpoint,
    save_replay_buffer,
)
from vlmrm.agents.config import (
    compose_train_config,
    config_dir,
    goal_prompt,
    load_resume_config,
    validate_train_config,
)
from vlmrm.agents.relabel import EpisodeRelabeller, TimedReward, resize_uint8
from vlmrm.agents.rollout import EvalSummary, run_episodes, write_video
from vlmrm.runtime.stop import GracefulStop
from vlmrm.agents.vec_env import EnvFactory, env_factory, make_training_env

__all__ = [
    "ALGORITHMS",
    "OFF_POLICY",
    "EnvFactory",
    "EpisodeRelabeller",
    "EpisodeStats",
    "EvalSummary",
    "EvalVideo",
    "GracefulStop",
    "PeriodicCheckpoint",
    "StopOnSignal",
    "TimedReward",
    "agent_kwargs",
    "build_agent",
    "build_reward_model",
    "check_action_space",
    "check_agent_params",
    "compose_train_config",
    "config_dir",
    "env_factory",
    "find_checkpoint",
    "goal_prompt",
    "latest_checkpoint",
    "load_agent",
    "load_replay_buffer",
    "load_resume_config",
    "make_training_env",
    "resize_uint8",
    "run_episodes",
    "save_checkpoint",
    "save_replay_buffer",
    "validate_train_config",
    "write_video",
]
