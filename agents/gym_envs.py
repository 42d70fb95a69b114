"""``env=<any Gymnasium id>`` for ``python -m vlmrm.train``: the id, its module, its agent.

The three tuned presets (``env=Humanoid|CartPole|MountainCar``) are config files; any
other value of ``env=`` is read as a Gymnasium id (``Acrobot-v1``, or
``my_package.envs:MyEnv-v0``, which imports ``my_package.envs`` first, as ``gym.make``
does). Such an env is trained with the generic env file ``configs/env/_gym.yaml`` and,
unless ``agent=`` is given, the agent its action space calls for: SAC for continuous
(Box) actions, DQN for discrete ones, PPO for anything else. Only gymnasium is imported
here (never torch), so a mistyped id fails in a second.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence

from vlmrm.errors import ConfigError

#: The generic env file of the config tree (``configs/env/_gym.yaml``).
GENERIC_ENV = "_gym"


def import_env_module(env_id: str) -> str:
    """Import the module of a ``module:Env-v0`` id (it registers the env); returns the bare id."""
    if ":" not in env_id:
        return env_id
    module, _, bare = env_id.partition(":")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"env={env_id}: cannot import {module!r} ({exc}); is the package installed?") from None
    return bare


def check_gym_id(env_id: str) -> str:
    """The registered id of ``env_id`` (its module imported), or a one-line error."""
    import gymnasium as gym

    bare = import_env_module(env_id)
    if bare not in gym.registry:
        import difflib

        close = difflib.get_close_matches(bare, list(gym.registry), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"unknown env {env_id!r}{hint}: choose one of the presets (CartPole, Humanoid, MountainCar) or a registered "
            "Gymnasium id such as Acrobot-v1 (module:Env-v0 imports the module first)"
        )
    return bare


def default_algo(env_id: str) -> str:
    """The agent for an env's action space: sac (Box), dqn (Discrete), ppo (anything else)."""
    import gymnasium as gym

    bare = check_gym_id(env_id)
    try:
        env = gym.make(bare)
    except Exception as exc:  # noqa: BLE001 - any constructor failure is the user's env
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot create env {env_id!r}: {msg}") from None
    try:
        space = env.action_space
    finally:
        env.close()
    if isinstance(space, gym.spaces.Box):
        return "sac"
    if isinstance(space, gym.spaces.Discrete):
        return "dqn"
    return "ppo"


def env_name(env_id: str) -> str:
    """A run-folder-friendly name of an id: ``my.pkg:My/Env-v0`` → ``My-Env-v0``."""
    bare = env_id.rpartition(":")[2]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", bare).strip("-") or "env"


def generic_env_overrides(env_id: str, user_keys: Sequence[str], has_baseline: bool) -> list[str]:
    """Hydra overrides that train on ``env_id`` with the generic env file.

    ``user_keys`` are the keys given on the command line: ``agent`` picked there wins
    over the action space's default; ``env.name`` and ``reward.alpha`` likewise.
    """
    check_gym_id(env_id)
    out = [f"env={GENERIC_ENV}", f"env.id={env_id}"]
    if "env.name" not in user_keys:
        out.append(f"env.name={env_name(env_id)}")
    if "agent" not in user_keys:
        out.append(f"agent={default_algo(env_id)}")
    if has_baseline and "env.alpha" not in user_keys:
        out.append("env.alpha=0.5")
    return out
