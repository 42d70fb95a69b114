"""Scripted controllers for the CLIP-friendly envs: policies that reach the goal states.

A random policy rarely balances CartPole's pole or gets MountainCar's car to the flag, so
rollout datasets (``python -m vlmrm.tune.rollouts``) and quick checks of a reward need
a policy that does. Each controller here reads ``info["state"]`` (the envs of this
package provide it; the observation is used otherwise) and takes a random action with
probability ``noise``, so one controller gives upright *and* falling states:

* CartPole: a PD law on the pole angle, plus a weak pull back to the centre;
* MountainCar: push in the direction of motion, pumping energy until the flag.

Policies are ``policy(obs, info) -> action``, as :func:`vlmrm.rollout.iter_steps` calls
them, and draw every random number from the generator they are given, so rollouts are
reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError

#: Policy kinds :func:`make_policy` knows.
POLICIES = ("random", "scripted")
#: ``policy(obs, info) -> action``
Policy = Callable[[Any, dict], Any]


def env_kind(env: Any) -> str:
    """``"cartpole"``, ``"mountaincar"`` or ``"other"``: which controller fits ``env``."""
    name = type(env.unwrapped).__name__.lower()
    if "cartpole" in name:
        return "cartpole"
    if "mountaincar" in name or "mountain_car" in name:
        return "mountaincar"
    return "other"


def random_action(space: Any, rng: np.random.Generator) -> Any:
    """A uniform sample of a Discrete or Box action space, drawn from ``rng``."""
    if hasattr(space, "n"):
        return int(rng.integers(int(space.n)))
    lo, hi = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    return rng.uniform(lo, hi).astype(space.dtype)


def cartpole_action(state: np.ndarray) -> int:
    """PD balancer: push right when the pole leans (or falls) right, with a pull to the centre."""
    x, x_dot, theta, theta_dot = state[:4]
    return int(0.05 * x + 0.2 * x_dot + theta + 0.3 * theta_dot > 0)


def mountaincar_action(state: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Energy pumping: full push in the direction of motion (left when standing still)."""
    velocity = state[1]
    push = 1.0 if velocity > 0 else -1.0
    return np.array([push], dtype=dtype)


def make_policy(kind: str, env: Any, rng: np.random.Generator, noise: float = 0.0) -> Policy:
    """A rollout policy ``(obs, info) -> action`` for ``env``.

    ``"random"`` samples the action space uniformly (from ``rng``). ``"scripted"`` is the
    env's controller, taking a random action with probability ``noise``; envs without a
    controller fall back to random actions.
    """
    space = env.action_space
    if kind not in POLICIES:
        raise ConfigError(f"unknown policy {kind!r}; choose from {POLICIES}")
    kind_of_env = env_kind(env)
    if kind == "random" or kind_of_env == "other":
        return lambda obs, info: random_action(space, rng)

    def scripted(obs: Any, info: dict) -> Any:
        if rng.random() < noise:
            return random_action(space, rng)
        state = np.asarray(info.get("state", obs), dtype=np.float64)
        if kind_of_env == "cartpole":
            return cartpole_action(state)
        return mountaincar_action(state, space.dtype)

    return scripted
