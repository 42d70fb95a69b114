"""The training configuration: Hydra composition of ``configs/``, checks, and resume.

``compose_train_config(["env=Humanoid", "goal=kneeling", "reward.alpha=0.5"])`` returns the
fully resolved config that a run saves as ``config.yaml``. Hydra's compose API does the
group selection (``env=Humanoid`` picks ``configs/env/Humanoid.yaml``, whose defaults
list picks the paper's algorithm) and the ``key=value`` grammar; this module adds what
Hydra does not know:

* the env file's per-algorithm hyper-parameters (``env.agent_params.<algo>``) are merged
  into ``agent`` unless the user set that ``agent.<key>`` on the command line;
* free-text values (``goal=pole upright, please``, ``env.goal_template=a {goal}``) are
  quoted before Hydra parses them, since commas, braces and parentheses are grammar;
* every value is checked, and every failure is a :class:`~vlmrm.errors.ConfigError`
  whose message is one line (Hydra's own errors are shortened to one line too).
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from vlmrm.checks import PRECISIONS, check_alpha, resolve_compile
from vlmrm.errors import ConfigError

GROUPS = ("env", "agent", "reward")
#: Keys whose values are free text: quoted for Hydra, so ",", "{", "(" etc. are literal.
TEXT_KEYS = frozenset({"goal", "baseline", "goal_template", "run_name", "out_dir", "resume", "name", "id", "model", "pretrained"})
RELABEL_MODES = ("auto", "episode", "step", "none")
#: Settings that are free-form keyword mappings handed to SB3: any key may be set in them.
FREE_MAPPINGS = ("agent.policy_kwargs",)
#: Settings that cannot change when a run is resumed (they shape the saved agent/buffer).
RESUME_FIXED = ("env", "agent.algo", "agent.policy", "agent.policy_kwargs", "agent.buffer_size", "n_envs", "reward.model", "reward.pretrained")


def config_dir() -> Path:
    """The installed ``configs/`` directory (``vlmrm.configs``), editable or from a wheel."""
    return Path(str(resources.files("vlmrm.configs")))


def group_options(group: str) -> list[str]:
    """Names of the config files of a group (``env`` → ``["CartPole", "Humanoid", ...]``)."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _quote(value: str) -> str:
    """Quote a free-text value for Hydra's override grammar (literal commas, braces...)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value  # already quoted by the user
    # Hydra reads a backslash as an escape only before a quote (or the closing quote).
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return "'" + value.replace("'", "\\'") + "'"


def _split(arg: str) -> tuple[str, str]:
    if "=" not in arg:
        raise ConfigError(
            f"expected key=value, got {arg!r} (e.g. env=CartPole goal=\"pole upright\" total_steps=1e5)"
        )
    key, value = arg.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"missing key before '=' in {arg!r}")
    return key, value


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """Check ``key=value`` form, resolve group options case-insensitively, quote free text."""
    out = []
    for arg in overrides:
        if not isinstance(arg, str):
            raise ConfigError(f"overrides must be strings like key=value, got {arg!r}")
        if arg.startswith("~"):
            out.append(arg)
            continue
        key, value = _split(arg)
        bare = key.lstrip("+")
        if any(bare == m or bare.startswith(m + ".") for m in FREE_MAPPINGS):
            key = "++" + bare  # add or replace: the mapping has no fixed set of keys
        if bare in GROUPS:
            options = group_options(bare)
            match = {o.lower(): o for o in options}.get(value.strip().strip("'\"").lower())
            if match is None:
                raise ConfigError(f"unknown {bare} {value!r}; choose one of: {', '.join(options)}")
            value = match
        elif bare.rsplit(".", 1)[-1] in TEXT_KEYS and value.strip().lower() not in ("null", "none"):
            value = _quote(value)
        out.append(f"{key}={value}")
    return out


def _user_keys(overrides: Sequence[str]) -> set[str]:
    return {_split(a)[0].lstrip("+") for a in overrides if not a.startswith("~")}


def _hydra_error(exc: Exception) -> ConfigError:
    msg = _one_line(exc)
    m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        return ConfigError(f"unknown setting {key!r} (check the spelling; see configs/train.yaml)")
    m = re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        return ConfigError(f"unknown setting {m.group(1)!r} (check the spelling; see configs/train.yaml)")
    return ConfigError(f"bad override: {msg}")


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
            return compose(config_name="train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise _hydra_error(exc) from None


def _merge_agent_params(cfg: DictConfig, user_keys: set[str]) -> None:
    """Apply ``env.agent_params[algo]`` to ``agent`` except where the user set the key.

    Mappings merge key by key: ``agent.policy_kwargs.activation_fn=tanh`` keeps the env's
    ``net_arch``, while ``agent.policy_kwargs={...}`` replaces the whole mapping.
    """
    algo = cfg.agent.get("algo") if cfg.get("agent") is not None else None
    if algo is None:
        raise ConfigError("no agent selected; add agent=sac, agent=ppo or agent=dqn")
    params = (cfg.env.get("agent_params") or {}).get(algo) or {}
    with open_dict(cfg.agent):
        _apply_defaults(cfg.agent, params, "agent", user_keys)


def _apply_defaults(target: DictConfig, params: Mapping, prefix: str, user_keys: set[str]) -> None:
    for key, value in params.items():
        path = f"{prefix}.{key}"
        if path in user_keys:
            continue
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping) and any(k.startswith(path + ".") for k in user_keys):
            _apply_defaults(current, value, path, user_keys)
        else:
            target[key] = value


def _to_plain(cfg: DictConfig) -> DictConfig:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve the config: {_one_line(exc)}") from None


def compose_train_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose, merge and check the training config for command-line style overrides.

    Returns a resolved (interpolation-free) config; raises :class:`ConfigError` with a
    one-line message for anything invalid.
    """
    overrides = list(overrides)
    if any(_split(a)[0] == "resume" for a in overrides if not a.startswith("~")):
        raise ConfigError("resume=<run dir> is handled by load_resume_config, not compose_train_config")
    normalized = normalize_overrides(overrides)
    cfg = _compose(normalized)
    _merge_agent_params(cfg, _user_keys(normalized))
    cfg = _to_plain(cfg)
    return validate_train_config(cfg)


def _as_int(value: Any, name: str, minimum: int) -> int:
    """Integers, also written as floats (``1e6``); bools and fractions are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _as_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def torch_threads(value: Any) -> int:
    """CPU threads for torch in the trainer: ``auto`` is ``min(4, cores // 2)``, at least 1.

    Small MLP updates and small CLIP batches gain little from many threads, and when the
    cores are shared (sub-env worker processes, other jobs) OpenMP's spinning threads make
    them 10-40x slower; half the cores, at most 4, leaves room for the env workers.
    """
    if value in (None, "auto"):
        return max(1, min(4, (os.cpu_count() or 2) // 2))
    return _as_int(value, "threads", 1)


def goal_prompt(template: str, goal: str) -> str:
    """``template.format(goal=goal)``, with a clear error for templates that do not fit."""
    _as_text(template, "env.goal_template")
    _as_text(goal, "goal")
    if "{goal}" not in template:
        raise ConfigError(
            f"env.goal_template must contain '{{goal}}' where the goal goes, got {template!r} "
            "(e.g. 'a humanoid robot {goal}')"
        )
    try:
        return template.format(goal=goal)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"env.goal_template {template!r} may contain only the field {{goal}} "
            f"(write literal braces as '{{{{' and '}}}}'): {exc!r}"
        ) from None


def _check_agent(agent: DictConfig) -> None:
    from vlmrm.agents.builders import ALGORITHMS, check_agent_params

    algo = agent.get("algo")
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown agent.algo {algo!r}; choose one of: {', '.join(ALGORITHMS)}")
    check_agent_params(algo, OmegaConf.to_container(agent))


def validate_train_config(cfg: DictConfig) -> DictConfig:
    """Check every value of a resolved training config; normalise numbers and modes.

    Returns the same config with ``total_steps`` etc. as ints and ``reward.relabel``
    resolved from ``auto`` to ``episode``/``step``/``none``.
    """
    from vlmrm.agents.builders import OFF_POLICY

    env = cfg.env
    _as_text(env.get("name"), "env.name")
    _as_text(env.get("id"), "env.id")
    with open_dict(cfg):
        env.episode_length = _as_int(env.get("episode_length"), "env.episode_length", 1)
        size = env.get("render_size")
        if not isinstance(size, (list, tuple, ListConfig)) or len(size) != 2:
            raise ConfigError(f"env.render_size must be [width, height], got {size!r}")
        env.render_size = [_as_int(s, "env.render_size", 1) for s in size]
        if env.get("kwargs") is not None and not isinstance(env.kwargs, (dict, DictConfig)):
            raise ConfigError(f"env.kwargs must be a mapping, got {env.kwargs!r}")
        goal_prompt(env.get("goal_template"), cfg.get("goal"))
        cfg.seed = _as_int(cfg.get("seed"), "seed", 0)
        cfg.total_steps = _as_int(cfg.get("total_steps"), "total_steps", 1)
        cfg.n_envs = _as_int(cfg.get("n_envs"), "n_envs", 1)
        cfg.checkpoint_every = _as_int(cfg.get("checkpoint_every"), "checkpoint_every", 0)
        cfg.eval.every = _as_int(cfg.eval.get("every"), "eval.every", 0)
        cfg.eval.episodes = _as_int(cfg.eval.get("episodes"), "eval.episodes", 0)
        if not isinstance(cfg.get("subprocess"), bool):
            raise ConfigError(f"subprocess must be true or false, got {cfg.get('subprocess')!r}")
        for key in ("progress_bar",):
            if not isinstance(cfg.get(key), bool):
                raise ConfigError(f"{key} must be true or false, got {cfg.get(key)!r}")
        cfg.verbose = _as_int(cfg.get("verbose"), "verbose", 0)
        if cfg.get("threads", "auto") != "auto":
            cfg.threads = torch_threads(cfg.threads)
        _as_text(cfg.get("out_dir"), "out_dir")
        if cfg.get("run_name") is not None:
            name = _as_text(cfg.run_name, "run_name")
            if "/" in name or name in (".", ".."):
                raise ConfigError(f"run_name must be a plain directory name, got {name!r}")

        _check_agent(cfg.agent)
        algo = cfg.agent.algo
        freq = cfg.agent.get("train_freq")
        if isinstance(freq, (list, ListConfig)) and len(freq) == 2 and str(freq[1]) == "episode" and cfg.n_envs > 1:
            raise ConfigError(
                "agent.train_freq=[n, episode] works with n_envs=1 only (an SB3 rule); with several "
                "envs use steps, e.g. agent.train_freq=<episode length>"
            )

        reward = cfg.reward
        relabel = reward.get("relabel", "auto")
        if relabel not in RELABEL_MODES:
            raise ConfigError(f"reward.relabel must be one of {RELABEL_MODES}, got {relabel!r}")
        if reward.get("model") is None:
            reward.relabel = "none"
        else:
            _as_text(reward.model, "reward.model")
            reward.alpha = check_alpha(reward.get("alpha"))
            if reward.alpha > 0:
                _as_text(cfg.get("baseline"), "baseline")
            if reward.get("precision") not in PRECISIONS:
                raise ConfigError(f"reward.precision must be one of {PRECISIONS}, got {reward.get('precision')!r}")
            with open_dict(reward):
                reward.compile = resolve_compile(reward.get("compile", False), "reward.compile")
            if reward.get("batch_size") is not None:
                reward.batch_size = _as_int(reward.batch_size, "reward.batch_size", 1)
            reward.max_pending_frames = _as_int(reward.get("max_pending_frames"), "reward.max_pending_frames", 1)
            if relabel in ("auto", "none"):
                if relabel == "none":
                    raise ConfigError("reward.relabel=none needs reward=ground_truth; use episode or step")
                reward.relabel = "episode" if algo in OFF_POLICY else "step"
            elif relabel == "episode" and algo not in OFF_POLICY:
                raise ConfigError(
                    f"reward.relabel=episode relabels a replay buffer, which {algo} has not; "
                    "use an off-policy agent (sac, dqn) or reward.relabel=step"
                )
    return cfg


def _fixed_changed(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in RESUME_FIXED)


def load_resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The saved config of ``run_dir`` with ``overrides`` (e.g. a larger ``total_steps``).

    Settings that shape the saved agent or replay buffer (env, algorithm, network,
    n_envs, reward model) cannot change; others (total_steps, eval, alpha...) can.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"resume={run_dir}: no config.yaml there; pass a run directory made by vlmrm.train")
    cfg = OmegaConf.load(path)
    dotlist = []
    for arg in overrides:
        key, value = _split(arg)
        key = key.lstrip("+")
        if key == "resume":
            continue
        if key in GROUPS or _fixed_changed(key):
            raise ConfigError(f"{key} cannot change when resuming a run (it shapes the saved agent)")
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            close = difflib.get_close_matches(key, _all_keys(cfg), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r}{hint}")
        dotlist.append(f"{key}={value}")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    with open_dict(cfg):
        cfg.resume = str(run_dir)
    return validate_train_config(cfg)


def _all_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(cfg, (DictConfig, Mapping)):
        for k, v in cfg.items():
            full = f"{prefix}{k}"
            keys.append(full)
            keys.extend(_all_keys(v, full + "."))
    return keys
