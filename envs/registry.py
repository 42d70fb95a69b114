"""Gymnasium registrations of the CLIP-friendly environments and their per-env defaults.

The env files of the training config tree, ``configs/env/<name>.yaml`` (shipped as
``vlmrm.configs``), are the one source of each environment's defaults: which id to make,
which prompts the VLM-RM paper used with it, what frame size to render, how long an
episode is and which constructor arguments it takes. ``ENV_DEFAULTS`` is read from their
``env`` sections, so the registrations, ``make_env``, the CLIs and ``python -m
vlmrm.train env=<name>`` cannot drift apart; the Python side only adds the entry points.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from ._common import DEFAULT_RENDER_SIZE, check_size, is_positive_int


@dataclass(frozen=True)
class EnvDefaults:
    """Defaults for one environment.

    Attributes:
        name: short name (the key in ``ENV_DEFAULTS``), e.g. ``"Humanoid"``.
        env_id: registered gymnasium id, e.g. ``"vlmrm/Humanoid-v0"``.
        goal_template: turns a goal into the CLIP goal prompt; contains ``{goal}``.
        baseline: the baseline prompt ``b`` of goal-baseline regularisation.
        goal: the default goal (the one used in the VLM-RM paper).
        render_size: ``(width, height)`` of rendered frames (the registration's default):
            CLIP's common input size, 224², where the config file says ``auto``.
        episode_length: steps before truncation (gymnasium's ``max_episode_steps``).
        env_kwargs: extra keyword arguments of the environment's constructor.
    """

    name: str
    env_id: str
    goal_template: str
    baseline: str
    goal: str
    render_size: tuple[int, int] = DEFAULT_RENDER_SIZE
    episode_length: int = 1000
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def goal_prompt(self, goal: str | None = None) -> str:
        """The goal prompt for ``goal`` (default: this env's default goal)."""
        return self.goal_template.format(goal=self.goal if goal is None else goal)


def env_defaults_from_config(section: Any) -> EnvDefaults:
    """:class:`EnvDefaults` from the ``env`` section of a ``configs/env/<name>.yaml`` file."""
    size = section["render_size"]
    # auto (the reward model's input size) is the trainer's to resolve; a registration
    # made without a model draws frames at CLIP's common input size
    width, height = DEFAULT_RENDER_SIZE if size == "auto" else (int(v) for v in size)
    return EnvDefaults(
        name=str(section["name"]),
        env_id=str(section["id"]),
        goal_template=str(section["goal_template"]),
        baseline=str(section["baseline"]),
        goal=str(section["goal"]),
        render_size=(width, height),
        episode_length=int(section["episode_length"]),
        env_kwargs=dict(section.get("kwargs") or {}),
    )


def _load_env_defaults() -> dict[str, EnvDefaults]:
    """Every environment's defaults, from the shipped ``configs/env/*.yaml`` files."""
    from omegaconf import OmegaConf

    folder = resources.files("vlmrm.configs") / "env"
    loaded = {}
    for name in sorted(_ENTRY_POINTS):
        section = OmegaConf.to_container(OmegaConf.load(str(folder / f"{name}.yaml")).env)
        loaded[name] = env_defaults_from_config(section)
    return loaded


_ENTRY_POINTS = {
    "CartPole": ("vlmrm.envs.cartpole:CartPoleEnv", 475.0),
    "MountainCar": ("vlmrm.envs.mountain_car:MountainCarContinuousEnv", 90.0),
    "Humanoid": ("vlmrm.envs.humanoid:TexturedHumanoidEnv", None),
}


#: Per-environment defaults, keyed by short name (read from ``configs/env/<name>.yaml``).
ENV_DEFAULTS: dict[str, EnvDefaults] = _load_env_defaults()


def register_envs() -> None:
    """Register every id in ``ENV_DEFAULTS`` with gymnasium; calling it again is a no-op.

    Runs on ``import vlmrm.envs``. Subprocess vector envs that re-import the package
    (spawn / forkserver) therefore see the ids too.
    """
    for name, defaults in ENV_DEFAULTS.items():
        if defaults.env_id in gym.registry:
            continue
        entry_point, reward_threshold = _ENTRY_POINTS[name]
        width, height = defaults.render_size
        gym.register(
            id=defaults.env_id,
            entry_point=entry_point,
            max_episode_steps=defaults.episode_length,
            reward_threshold=reward_threshold,
            kwargs={"width": width, "height": height, **defaults.env_kwargs},
        )


def _valid_names() -> str:
    return ", ".join(f"{d.name!r} ({d.env_id})" for d in ENV_DEFAULTS.values())


def get_env_defaults(name_or_id: str) -> EnvDefaults:
    """Look up defaults by short name (case-insensitive) or by registered id.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    for defaults in ENV_DEFAULTS.values():
        if name_or_id.lower() == defaults.name.lower() or name_or_id == defaults.env_id:
            return defaults
    raise ValueError(f"unknown environment {name_or_id!r}; valid names: {_valid_names()}")


def make_env(
    name_or_id: str,
    *,
    episode_length: int | None = None,
    width: int | None = None,
    height: int | None = None,
    render_mode: str | None = "rgb_array",
    **kwargs: Any,
) -> gym.Env:
    """Make an environment by short name or gymnasium id, ready to render for CLIP.

    ``make_env("Humanoid")`` is ``gym.make("vlmrm/Humanoid-v0", render_mode="rgb_array",
    width=224, height=224, max_episode_steps=100)``. Any other gymnasium id is made too
    (``module:Env-v0`` imports the module first), with ``width``/``height`` passed only
    where its constructor takes them (MuJoCo envs do, classic-control ones render at
    their own size). An env that cannot render ``rgb_array`` frames is refused.

    Args:
        name_or_id: short name (``"CartPole"``, ``"MountainCar"``, ``"Humanoid"``,
            case-insensitive), a registered gymnasium id, or ``module:id``.
        episode_length: steps before truncation (``max_episode_steps``); default: the
            env's ``ENV_DEFAULTS`` entry, or its registration for other ids.
        width: frame width in pixels.
        height: frame height in pixels; both default to the env's ``render_size``.
        render_mode: ``"rgb_array"`` by default, since frames feed the reward model.
        **kwargs: passed to the environment's constructor.

    Raises:
        ValueError: unknown name, a non-positive ``episode_length``/``width``/``height``,
            or ``render_mode="rgb_array"`` for an env that has no such mode.
    """
    register_envs()
    try:
        defaults: EnvDefaults | None = get_env_defaults(name_or_id)
    except ValueError:
        name_or_id = _import_module_of(name_or_id)
        if name_or_id not in gym.registry:
            raise ValueError(
                f"unknown environment {name_or_id!r}; valid names: {_valid_names()}, "
                "or any id registered with gymnasium"
            ) from None
        defaults = None
    if episode_length is not None and not is_positive_int(episode_length):
        raise ValueError(f"episode_length must be a positive int, got {episode_length!r}")

    if defaults is not None:
        env_id = defaults.env_id
        width = defaults.render_size[0] if width is None else width
        height = defaults.render_size[1] if height is None else height
        if episode_length is None:
            episode_length = defaults.episode_length
    else:
        env_id = name_or_id
    if width is not None or height is not None:
        check_size(width if width is not None else 1, height if height is not None else 1)
        takes = defaults is not None or _takes_size(env_id)
        kwargs.update({k: v for k, v in (("width", width), ("height", height)) if v is not None and takes})
    env = gym.make(env_id, render_mode=render_mode, max_episode_steps=episode_length, **kwargs)
    modes = env.metadata.get("render_modes") or []
    if render_mode is not None and render_mode not in modes:
        env.close()
        raise ValueError(
            f"{env_id} cannot render {render_mode!r} frames (its render modes: {modes or 'none'}); "
            "a CLIP reward needs rgb_array frames: pick an env that renders them"
        )
    return env


def _import_module_of(env_id: str) -> str:
    """``module:Env-v0`` → import ``module`` (it registers the env) and return ``Env-v0``."""
    if ":" not in env_id:
        return env_id
    module, _, bare = env_id.partition(":")
    importlib.import_module(module)
    return bare


def _takes_size(env_id: str) -> bool:
    """Whether the env's constructor takes ``width``/``height`` (by name or ``**kwargs``)."""
    spec = gym.spec(env_id)
    if "width" in (spec.kwargs or {}):
        return True
    entry = spec.entry_point
    try:
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
        params = inspect.signature(creator).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return False
    return any(p.name == "width" or p.kind is p.VAR_KEYWORD for p in params)
