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
* ``config=FILE.yaml`` puts a file's settings before the command line's;
* every key and value is checked, first by the torch-free
  :class:`~vlmrm.agents.settings.TrainSettings` (unknown keys with the closest one, types,
  ranges, α through :func:`vlmrm.checks.check_alpha`), then ``agent.*`` against SB3; every
  failure is a :class:`~vlmrm.errors.ConfigError` whose message is one line (Hydra's own
  errors are shortened to one line too).

Nothing here imports torch or SB3 before the torch-free checks have passed.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vlmrm.agents.gym_envs import GENERIC_ENV, generic_env_overrides
from vlmrm.agents.settings import RENAMED, TrainSettings, goal_prompt, renamed_hint  # noqa: F401 (goal_prompt: re-exported)
from vlmrm.cli.args import check_keys, flat_items, read_config_file, settings_dict
from vlmrm.errors import ConfigError
from vlmrm.runtime.threads import (  # noqa: F401 - available_cores, MAX_AUTO_THREADS: re-exported
    MAX_AUTO_THREADS,
    available_cores,
    resolve_threads,
)
from vlmrm.runtime.threads import describe_threads as runtime_describe_threads

GROUPS = ("env", "agent", "reward")
#: Keys whose values are free text: quoted for Hydra, so ",", "{", "(" etc. are literal.
TEXT_KEYS = frozenset({"goal", "baseline", "goal_template", "run_name", "out", "resume", "name", "id", "model", "pretrained"})
#: Prompt keys that also take a list of prompts (``goal='[kneeling,"on its knees"]'``).
PROMPT_KEYS = frozenset({"goal", "baseline"})
#: Settings that are free-form keyword mappings handed to SB3: any key may be set in them.
#: (every ``agent.<key>``: SB3's signature checks them; ``policy_kwargs`` takes any key)
FREE_MAPPINGS = ("agent",)
#: Settings that cannot change when a run is resumed (they shape the saved agent/buffer).
RESUME_FIXED = ("env", "agent.algo", "agent.policy", "agent.policy_kwargs", "agent.buffer_size", "n_envs", "reward.model", "reward.pretrained")


def config_dir() -> Path:
    """The installed ``configs/`` directory (``vlmrm.configs``), editable or from a wheel."""
    return Path(str(resources.files("vlmrm.configs")))


def group_options(group: str) -> list[str]:
    """Names of the config files of a group (``env`` → ``["CartPole", "Humanoid", ...]``).

    Files whose name starts with ``_`` (the generic env file) are selected by the trainer.
    """
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


def preset_ids() -> dict[str, str]:
    """The env presets' Gymnasium ids → their names (``vlmrm/CartPole-v0`` → ``CartPole``)."""
    return {
        str(OmegaConf.load(config_dir() / "env" / f"{name}.yaml").env.id): name for name in group_options("env")
    }


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


def _is_list(value: str) -> bool:
    """Whether an override value is written as a Hydra list (``[a,"b c"]``)."""
    value = value.strip()
    return value.startswith("[") and value.endswith("]")


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
        if any(bare.startswith(m + ".") for m in FREE_MAPPINGS):
            key = "++" + bare  # add or replace: the mapping has no fixed set of keys
        if bare in GROUPS:
            options = group_options(bare) + ([GENERIC_ENV] if bare == "env" else [])
            match = {o.lower(): o for o in options}.get(value.strip().strip("'\"").lower())
            if match is None:
                raise ConfigError(f"unknown {bare} {value!r}; choose one of: {', '.join(options)}")
            value = match
        elif bare.rsplit(".", 1)[-1] in PROMPT_KEYS and _is_list(value):
            pass  # a list of prompts (averaged): Hydra parses it, each item quoted as needed
        elif bare.rsplit(".", 1)[-1] in TEXT_KEYS and value.strip().lower() not in ("null", "none"):
            value = _quote(value)
        out.append(f"{key}={value}")
    return out


def check_override_keys(overrides: Sequence[str]) -> None:
    """Refuse keys that are no setting (with the closest one) before Hydra composes.

    ``env.*`` and ``agent.*`` are free here; Hydra refuses a key their files do not
    define (unless added with ``+``), and SB3's signature checks ``agent.*`` later.
    """
    for arg in overrides:
        if arg.startswith("~"):
            continue
        key = _split(arg)[0].lstrip("+")
        hint = renamed_hint(key)
        if hint:
            raise ConfigError(f"unknown setting {key!r}: {hint}")
        if key.split(".", 1)[0] in ("env", "agent"):
            continue
        check_keys(TrainSettings, [key])


def _user_keys(overrides: Sequence[str]) -> set[str]:
    return {_split(a)[0].lstrip("+") for a in overrides if not a.startswith("~")}


def _hydra_error(exc: Exception) -> ConfigError:
    msg = _one_line(exc)
    m = re.search(r"Could not override '([^']+)'", msg)
    if m:
        key = m.group(1)
        return ConfigError(f"unknown setting {key!r} (check the spelling; see --help and configs/)")
    m = re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        return ConfigError(f"unknown setting {m.group(1)!r} (check the spelling; see --help and configs/)")
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


def _to_container(cfg: Any) -> dict:
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve the config: {_one_line(exc)}") from None


def _to_plain(cfg: DictConfig) -> DictConfig:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve the config: {_one_line(exc)}") from None


def expand_overrides(overrides: Sequence[str]) -> list[str]:
    """What Hydra's config tree cannot say by itself, as plain overrides.

    ``env=<a Gymnasium id>`` (not a preset) becomes the generic env file with that id and
    the agent of its action space (:mod:`vlmrm.agents.gym_envs`); a preset's id
    (``env=vlmrm/CartPole-v0``) selects the preset; ``agent.config=FILE`` (rl_zoo3
    hyper-parameters, :mod:`vlmrm.agents.hparams`) puts the file's settings first.
    """
    from vlmrm.agents.hparams import hparams_overrides, read_hparams

    out: list[str] = []
    hparams_file = env_value = None
    for arg in overrides:
        if not isinstance(arg, str):
            raise ConfigError(f"overrides must be strings like key=value, got {arg!r}")
        if not arg.startswith("~"):
            key, value = _split(arg)
            if key.lstrip("+") == "agent.config":
                hparams_file = value.strip().strip("'\"")
                continue
            if key.lstrip("+") == "env":
                env_value = value.strip().strip("'\"")
        out.append(arg)
    env_ids: tuple[str, ...] = ("vlmrm/Humanoid-v0", "Humanoid")
    if env_value is not None:
        presets = {o.lower(): o for o in group_options("env")}
        ids = preset_ids()
        name = presets.get(env_value.lower()) or ids.get(env_value)
        if name is not None or env_value == GENERIC_ENV:
            env_ids = (next((i for i, n in ids.items() if n == name), env_value), env_value)
            replacement = [f"env={name or env_value}"]
        else:
            keys = _user_keys(out)
            baseline = [_split(a)[1].strip() for a in out
                        if not a.startswith("~") and _split(a)[0].lstrip("+") == "baseline"]
            has_baseline = bool(baseline) and baseline[-1].lower() not in ("null", "none", "", "''", '""')
            replacement = generic_env_overrides(env_value, sorted(keys), has_baseline)
            env_ids = (env_value.rpartition(":")[2], env_value)
        out = [r for a in out for r in (replacement if _is_env_choice(a) else [a])]
    if hparams_file:
        out = hparams_overrides(read_hparams(hparams_file, env_ids)) + out
    return out


def _is_env_choice(arg: str) -> bool:
    return not arg.startswith("~") and _split(arg)[0].lstrip("+") == "env"


def hydra_value(value: Any) -> str:
    """A Python value in Hydra's override grammar (strings quoted, mappings as ``{k:v}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return _quote(str(value))


#: ``env.*`` keys whose values became top-level settings (``goal``, ``total_steps``...) or
#: were merged into ``agent``: the resolved config drops them so that each value shows once.
DERIVED_ENV_KEYS = ("goal", "baseline", "alpha", "center", "terminal", "total_steps", "n_envs", "subprocess", "eval_every",
                    "checkpoint_every", "agent_params")
#: Settings that name files or folders: made absolute when a run starts, so that a run
#: can be evaluated, loaded and resumed from any working directory.
PATH_KEYS = ("out", "reward.pretrained")


def absolute_paths(cfg: DictConfig) -> None:
    """``out`` and a local ``reward.pretrained`` file as absolute paths (tags stay as they are)."""
    out = cfg.get("out")
    if out:
        cfg.out = os.path.abspath(os.path.expanduser(str(out)))
    reward = cfg.get("reward") or {}
    pretrained = reward.get("pretrained")
    if pretrained and os.path.exists(os.path.expanduser(str(pretrained))):
        cfg.reward.pretrained = os.path.abspath(os.path.expanduser(str(pretrained)))


def compose_train_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose, merge and check the training config for command-line style overrides.

    Returns a resolved (interpolation-free) config; raises :class:`ConfigError` with a
    one-line message for anything invalid. Runs shorter than the agent's warm-up are
    scaled down to learn (:mod:`vlmrm.agents.short_runs`, with one printed notice).
    """
    from vlmrm.agents.short_runs import fit_short_run

    overrides = list(overrides)
    if any(_split(a)[0] == "resume" for a in overrides if not a.startswith("~")):
        raise ConfigError("resume=<run dir> is handled by load_resume_config, not compose_train_config")
    overrides = expand_overrides(overrides)
    check_override_keys(overrides)
    normalized = normalize_overrides(overrides)
    cfg = _compose(normalized)
    user_keys = _user_keys(normalized)
    _merge_agent_params(cfg, user_keys)
    cfg = _to_plain(cfg)
    with open_dict(cfg):
        for key in DERIVED_ENV_KEYS:
            cfg.env.pop(key, None)
        absolute_paths(cfg)
    cfg = validate_train_config(cfg)
    fit_short_run(cfg, user_keys)
    return validate_train_config(cfg)


def torch_threads(value: Any, env_workers: int = 0, cores: int | None = None) -> int:
    """CPU threads for torch in the trainer's process (agent updates and the CLIP reward):
    the one policy of every entry point, :func:`vlmrm.runtime.threads.resolve_threads`, with
    the env worker processes as the workers beside it."""
    return resolve_threads(value, env_workers, cores)


def env_workers(cfg: Mapping) -> int:
    """How many env worker processes a training config starts (subprocess envs, n_envs > 1)."""
    n_envs = int(cfg.get("n_envs", 1) or 1)
    return n_envs if cfg.get("subprocess") and n_envs > 1 else 0


def train_threads(cfg: Mapping) -> int:
    """The torch thread count of a training run: ``cfg.threads`` with its env workers."""
    return torch_threads(cfg.get("threads", "auto"), env_workers(cfg))


def describe_threads(cfg: Mapping) -> str:
    """``torch threads: N (why)``: the line a training run prints once with its setup."""
    return runtime_describe_threads(cfg.get("threads", "auto"), env_workers(cfg), "env worker processes")


def validate_train_config(cfg: DictConfig) -> DictConfig:
    """Check every value of a composed training config; normalise numbers and modes.

    First the torch-free checks of :class:`~vlmrm.agents.settings.TrainSettings` (keys,
    types, ranges, α, ``reward.compile``, the relabel mode, resolved from ``auto`` to
    ``episode``/``step``/``none``), then what needs SB3: the ``agent.*`` keys against the
    SB3 class's signature. Returns a plain config with the normalised values.
    """
    settings = TrainSettings.from_config(_to_container(cfg)).validate()
    data = settings_dict(settings)
    from vlmrm.agents.builders import check_agent_params

    check_agent_params(settings.agent["algo"], settings.agent)
    return OmegaConf.create(data)


def _fixed_changed(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in RESUME_FIXED)


def file_overrides(path: str) -> list[str]:
    """``config=FILE.yaml``: the file's settings as ``key=value`` overrides, in file order.

    Mappings become dotted keys (``reward: {alpha: 0.5}`` → ``reward.alpha=0.5``), group
    names select group files (``env: CartPole``); the command line comes after, and wins.
    """
    data = OmegaConf.to_container(read_config_file(path))
    return [f"{key}={_override_value(value)}" for key, value in flat_items(data)]


def _override_value(value: Any) -> str:
    """A YAML value in Hydra's override grammar (free text is quoted by normalize_overrides)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) if not isinstance(v, str) else _quote(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{}"
    return str(value)


def resolve_config(argv: Sequence[str]) -> DictConfig:
    """The run config for command-line ``key=value`` arguments (a new run, or ``resume=``).

    ``config=FILE.yaml`` arguments are replaced by the file's settings first.
    """
    argv = list(argv)
    expanded: list[str] = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.strip() == "config" and value:
            expanded.extend(file_overrides(value.strip().strip("'\"")))
        else:
            expanded.append(arg)
    argv = expanded
    resume = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    rest = [a for a in argv if not a.startswith("resume=")]
    if resume and resume[-1].strip() not in ("", "null", "None"):
        return load_resume_config(resume[-1].strip().strip("'\""), rest)
    return compose_train_config(rest)


def load_resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The saved config of ``run_dir`` with ``overrides`` (e.g. a larger ``total_steps``).

    Settings that shape the saved agent or replay buffer (env, algorithm, network,
    n_envs, reward model) cannot change; others (total_steps, eval, alpha...) can.
    """
    from vlmrm.agents.checkpoint import read_run_config

    cfg = _migrate(read_run_config(run_dir, "resume"))
    dotlist = []
    for arg in overrides:
        key, value = _split(arg)
        key = key.lstrip("+")
        if key == "resume":
            continue
        hint = renamed_hint(key)
        if hint:
            raise ConfigError(f"unknown setting {key!r}: {hint}")
        if key in GROUPS or _fixed_changed(key):
            raise ConfigError(f"{key} cannot change when resuming a run (it shapes the saved agent)")
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            close = difflib.get_close_matches(key, _all_keys(cfg), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown setting {key!r}{hint}")
        dotlist.append(f"{key}={value}")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    with open_dict(cfg):
        cfg.resume = os.path.abspath(str(run_dir))
        absolute_paths(cfg)
    return validate_train_config(cfg)


def _migrate(cfg: DictConfig) -> DictConfig:
    """A run's saved config in today's keys (runs saved before keys were renamed resume too)."""
    with open_dict(cfg):
        for old, new in RENAMED.items():
            if old in cfg:
                cfg[new] = cfg.pop(old)
        if cfg.get("reward") is not None and cfg.reward.get("device", "auto") is None:
            cfg.reward.device = "auto"
        if cfg.get("reward") is not None and "distributed" not in cfg.reward:
            cfg.reward.distributed = False
        if cfg.get("reward") is not None and "terminal" not in cfg.reward:
            cfg.reward.terminal = "end"
        if cfg.get("eval") is not None and "best_metric" not in cfg.eval:
            cfg.eval.best_metric = "auto"
    return cfg


def _all_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(cfg, (DictConfig, Mapping)):
        for k, v in cfg.items():
            full = f"{prefix}{k}"
            keys.append(full)
            keys.extend(_all_keys(v, full + "."))
    return keys
