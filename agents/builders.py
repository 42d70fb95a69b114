"""Stable-Baselines3 agents and the CLIP reward model, built from config sections.

An ``agent`` section is ``{algo, policy, **kwargs}`` where every other key is a keyword
argument of the SB3 class; keys are checked against the class's signature up front, so a
typo fails in a second with the list of valid names rather than after the CLIP model and
the environments are loaded.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from vlmrm.agents.settings import ALGORITHM_NAMES, OFF_POLICY  # noqa: F401 (OFF_POLICY: re-exported)
from vlmrm.errors import ConfigError

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"sac": SAC, "ppo": PPO, "dqn": DQN, "td3": TD3, "ddpg": DDPG, "a2c": A2C}
assert tuple(ALGORITHMS) == ALGORITHM_NAMES  # the torch-free settings name the same ones
#: Constructor arguments set by the trainer, not by the agent config.
_MANAGED = frozenset({"self", "policy", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model"})
_ACTION_SPACES = {"sac": gym.spaces.Box, "td3": gym.spaces.Box, "ddpg": gym.spaces.Box, "dqn": gym.spaces.Discrete}
#: Hyper-parameters that may be rl_zoo3 schedules (``lin_7.3e-4``: linear from 7.3e-4 to 0).
_SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 class of ``"sac"``, ``"td3"``, ``"ddpg"``, ``"dqn"``, ``"ppo"`` or ``"a2c"``."""
    try:
        return ALGORITHMS[algo]
    except KeyError:
        raise ConfigError(f"unknown agent {algo!r}; choose one of: {', '.join(ALGORITHMS)}") from None


def _valid_params(algo: str) -> list[str]:
    sig = inspect.signature(algorithm_class(algo).__init__)
    return sorted(k for k in sig.parameters if k not in _MANAGED)


def check_agent_params(algo: str, agent: Mapping[str, Any]) -> None:
    """Raise a :class:`ConfigError` naming the first key SB3's ``algo`` would not accept."""
    valid = set(_valid_params(algo))
    if "action_noise" in agent:
        parse_action_noise(agent["action_noise"], algo)
    for key in agent:
        if key in ("algo", "policy"):
            continue
        if key in _MANAGED:
            raise ConfigError(f"agent.{key} is set by the trainer; use the top-level setting instead")
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f" (did you mean agent.{close[0]}?)" if close else ""
            raise ConfigError(
                f"agent.{key} is not a parameter of {algorithm_class(algo).__name__}{hint}; "
                f"valid: {', '.join(sorted(valid))}"
            )
    policy = agent.get("policy", "MlpPolicy")
    if not isinstance(policy, str) or not policy:
        raise ConfigError(f"agent.policy must be a policy name such as 'MlpPolicy', got {policy!r}")


def _policy_kwargs(value: Any) -> dict[str, Any]:
    kwargs = dict(value or {})
    act = kwargs.get("activation_fn")
    if isinstance(act, str):
        # YAML can only name the activation; SB3 wants the class (e.g. "ReLU" -> nn.ReLU).
        names = {n.lower(): n for n in dir(torch.nn) if isinstance(getattr(torch.nn, n), type)}
        if act.lower() not in names:
            raise ConfigError(f"agent.policy_kwargs.activation_fn {act!r} is not a torch.nn activation")
        kwargs["activation_fn"] = getattr(torch.nn, names[act.lower()])
    return kwargs


def agent_kwargs(agent: Mapping[str, Any]) -> dict[str, Any]:
    """SB3 keyword arguments from an agent section (plain Python values, SB3 types)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(agent, DictConfig):
        agent = OmegaConf.to_container(agent, resolve=True)
    algo = agent.get("algo")
    check_agent_params(algo, agent)
    kwargs = {k: v for k, v in agent.items() if k not in ("algo", "policy")}
    if isinstance(kwargs.get("train_freq"), list):
        n, unit = kwargs["train_freq"]
        kwargs["train_freq"] = (int(n), str(unit))
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = _policy_kwargs(kwargs["policy_kwargs"])
    for key in _SCHEDULES:
        if isinstance(kwargs.get(key), str):
            kwargs[key] = schedule(key, kwargs[key])
    return kwargs


def schedule(key: str, value: str):
    """rl_zoo3's ``lin_<x>`` (linear from x to 0 over training) as an SB3 schedule."""
    text = value.strip()
    try:
        start = float(text[4:] if text.startswith("lin_") else text)
    except ValueError:
        raise ConfigError(f"agent.{key}={value!r}: use a number or lin_<number> (a linear schedule)") from None
    if not text.startswith("lin_"):
        return start
    return lambda progress_remaining: progress_remaining * start


#: Agents that add ``agent.action_noise`` to their actions: off-policy, continuous actions.
NOISY_ALGORITHMS = ("sac", "td3", "ddpg")
NOISE_KINDS = ("normal", "ornstein-uhlenbeck")


def parse_action_noise(value: Any, algo: str) -> tuple[str, float] | None:
    """``"normal:0.1"`` → ``("normal", 0.1)``; ``None`` for no noise; a ConfigError otherwise.

    Only the off-policy continuous agents (sac, td3, ddpg) take exploration noise on their
    actions; dqn explores with ε-greedy (``agent.exploration_*``) and ppo/a2c by sampling
    their stochastic policy (``agent.ent_coef``, ``agent.use_sde``).
    """
    if value is None:
        return None
    if algo not in NOISY_ALGORITHMS:
        how = ("ε-greedy: agent.exploration_fraction, agent.exploration_final_eps" if algo == "dqn"
               else "sampling its stochastic policy: agent.ent_coef, agent.use_sde")
        raise ConfigError(
            f"agent.action_noise is exploration noise of the off-policy continuous agents "
            f"({', '.join(NOISY_ALGORITHMS)}); {algo} explores by {how}"
        )
    kind, _, std = str(value).partition(":")
    try:
        sigma = float(std) if std else 0.1
    except ValueError:
        sigma = float("nan")
    if kind not in NOISE_KINDS or not sigma > 0 or sigma == float("inf"):
        raise ConfigError(
            f"agent.action_noise={value!r}: use normal:<std> or ornstein-uhlenbeck:<std> with std > 0, "
            "e.g. agent.action_noise=normal:0.1"
        )
    return kind, sigma


def action_noise(value: Any, space: gym.Space, algo: str = "sac"):
    """``"normal:0.1"`` / ``"ornstein-uhlenbeck:0.1"`` (rl_zoo3's noise_type:noise_std) as SB3 noise.

    The std is per action dimension, in the action space's units (SB3 adds the noise to
    the action before clipping it to the space's bounds).
    """
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    if value is not None and not isinstance(value, str):
        return value  # an SB3 ActionNoise object (Python API)
    parsed = parse_action_noise(value, algo)
    if parsed is None:
        return None
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"agent.action_noise needs continuous (Box) actions, got {space}")
    kinds = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}
    n = int(np.prod(space.shape))
    return kinds[parsed[0]](mean=np.zeros(n), sigma=parsed[1] * np.ones(n))


def check_action_space(algo: str, space: gym.Space, env_name: str = "the env") -> None:
    """SAC needs continuous (Box) actions, DQN discrete ones; say so before SB3 asserts."""
    needed = _ACTION_SPACES.get(algo)
    if needed is not None and not isinstance(space, needed):
        kind = "continuous (Box)" if needed is gym.spaces.Box else "discrete"
        other = "dqn, ppo or a2c" if needed is gym.spaces.Box else "sac, td3, ddpg, ppo or a2c"
        raise ConfigError(
            f"{algo} needs {kind} actions but {env_name} has {space}; use agent={other}"
        )


def agent_device(device: str | None) -> str:
    """The agent's torch device under the reward CLIP's rule (:func:`vlmrm.models.resolve_device`):
    ``auto`` is CUDA when present, else the CPU; ``cuda`` on a machine without CUDA is one error
    line (SB3 alone would quietly train on the CPU), so ``device=`` and ``reward.device=`` agree."""
    if device is None or str(device).strip().lower() == "auto":
        return "auto"
    from vlmrm.models import resolve_device

    return str(resolve_device(str(device)))


#: The observation spaces SB3's policies take (Dict with agent.policy=MultiInputPolicy).
OBSERVATION_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                      gym.spaces.MultiBinary, gym.spaces.Dict)


def check_observation_space(space: gym.Space, env_name: str = "the env") -> None:
    """Refuse an observation space SB3 cannot store (Tuple, Text, Graph...) with one line,
    before its replay buffer raises ``NotImplementedError`` deep inside the agent's constructor."""
    if not isinstance(space, OBSERVATION_SPACES):
        raise ConfigError(
            f"{env_name} has a {type(space).__name__} observation space ({space}), which "
            "Stable-Baselines3 agents do not take; supported: Box, Discrete, MultiDiscrete, "
            "MultiBinary, Dict (with agent.policy=MultiInputPolicy). Register a version of the env "
            "wrapped in gymnasium.wrappers.FlattenObservation in a module and train on it with "
            "env=module:Env-v0"
        )


def build_agent(agent: Mapping[str, Any], env, *, seed: int | None = None, device: str = "auto", verbose: int = 0) -> BaseAlgorithm:
    """A fresh SB3 agent for ``env`` (a VecEnv) from an agent config section."""
    algo = agent["algo"]
    cls = algorithm_class(algo)
    check_observation_space(env.observation_space)
    check_action_space(algo, env.action_space)
    device = agent_device(device)
    kwargs = agent_kwargs(agent)
    if "action_noise" in kwargs:
        kwargs["action_noise"] = action_noise(kwargs["action_noise"], env.action_space, algo)
    try:
        return cls(agent.get("policy", "MlpPolicy"), env, seed=seed, device=device, verbose=verbose, **kwargs)
    except (ValueError, TypeError, AssertionError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot build {cls.__name__} from the agent config: {msg}") from exc


def load_agent(path: str, algo: str, env=None, device: str = "auto") -> BaseAlgorithm:
    """Load a saved agent; with ``env`` the env is reset before the next ``learn``.

    A missing, truncated or foreign file is a :class:`ConfigError` naming it (SB3 itself
    would append ``.zip`` to a missing name and fail deep inside ``zipfile``).
    """
    if not os.path.isfile(path):
        raise ConfigError(f"agent file {path} is missing")
    device = agent_device(device)
    try:
        return algorithm_class(algo).load(path, env=env, device=device)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated, not a zip, another algorithm's file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"cannot load {path} as an SB3 {algo.upper()} agent: {first}") from None


def build_reward_model(reward: Mapping[str, Any], goal: str | list[str], baseline: str | list[str] | None):
    """The CLIP reward of a reward section, or ``None`` for ``reward=ground_truth``.

    ``goal`` is the full goal prompt (the env's template already applied), or a list of
    them; ``baseline`` a prompt or a list. A list's prompt embeddings are averaged
    (:class:`vlmrm.CLIPReward`, as in VLM-RM).
    """
    import vlmrm

    spec = reward.get("model")
    if spec is None:
        return None
    clip = vlmrm.load_clip(
        spec,
        device=reward.get("device"),
        precision=reward.get("precision", "auto"),
        batch_size=reward.get("batch_size"),
        pretrained=reward.get("pretrained") or None,
        compile=reward.get("compile") or False,
        backend=reward.get("backend") or "auto",
        # the trainer (or a serving rank) has set its thread policy, env workers counted
        threads=torch.get_num_threads(),
    )
    return vlmrm.CLIPReward(clip, goal=_prompts(goal), baseline=_prompts(baseline) or None, alpha=reward.get("alpha", 0.0))


def _prompts(value: Any) -> str | list[str] | None:
    """A prompt or a list of prompts (averaged by the reward) as plain Python values."""
    if value is None or isinstance(value, str):
        return value
    return [str(v) for v in value]
