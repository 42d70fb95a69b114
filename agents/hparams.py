"""``agent.config=hparams.yml``: rl_zoo3-style hyper-parameter files for ``vlmrm.train``.

An rl_zoo3 file (``hyperparams/<algo>.yml``) maps env ids to an algorithm's settings::

    Pendulum-v1:
      n_timesteps: 20000
      policy: 'MlpPolicy'
      learning_rate: !!float 1e-3
      noise_type: 'normal'
      noise_std: 0.1
      policy_kwargs: "dict(net_arch=[400, 300])"

The entry of the env being trained is used (a file with one entry, or a flat mapping of
settings, is used whatever the env). Its keys become overrides placed before the
command line's, so ``agent.learning_rate=...`` typed by the user still wins:
``n_timesteps`` → ``total_steps``, ``n_envs`` → ``n_envs``, ``env_kwargs`` →
``env.kwargs``, ``noise_type``/``noise_std`` → ``agent.action_noise``, the rest →
``agent.<key>`` (checked against the SB3 class like any other). ``policy_kwargs`` may be
rl_zoo3's ``"dict(...)"`` string (literals and ``nn.<Activation>`` only; nothing is
evaluated). Schedules such as ``lin_7.3e-4`` are kept as strings and become linear
schedules when the agent is built. rl_zoo3 keys that wrap the env (``normalize``,
``frame_stack``, ``env_wrapper``...) have no equivalent here and are skipped with one
notice.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from typing import Any

from vlmrm.errors import ConfigError

#: rl_zoo3 keys that wrap the env or the training loop: not supported, skipped with a notice.
IGNORED = ("normalize", "normalize_kwargs", "frame_stack", "env_wrapper", "vec_env_wrapper",
           "callback", "monitor_kwargs", "n_eval_envs", "eval_env_kwargs")
TOP_LEVEL = {"n_timesteps": "total_steps", "n_envs": "n_envs"}


def read_hparams(path: str, env_ids: tuple[str, ...]) -> dict[str, Any]:
    """The settings for the env (any of ``env_ids``) in an rl_zoo3 file, plain values."""
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)  # rl_zoo3's !!float 1e-3 is standard YAML
    except (OSError, yaml.YAMLError) as exc:
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot read agent.config={path!r}: {msg}") from None
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"agent.config={path!r} must map env ids to hyper-parameters (rl_zoo3 format)")
    if not all(isinstance(v, Mapping) for v in data.values()):
        return dict(data)  # a flat mapping of one algorithm's settings
    for env_id in env_ids:
        if env_id in data:
            return dict(data[env_id])
    if len(data) == 1:
        return dict(next(iter(data.values())))
    raise ConfigError(
        f"agent.config={path!r} has no entry for {' / '.join(dict.fromkeys(env_ids))} "
        f"(it has: {', '.join(map(str, data))})"
    )


def parse_policy_kwargs(value: Any) -> Any:
    """rl_zoo3's ``"dict(net_arch=[64, 64], activation_fn=nn.ReLU)"`` as a mapping."""
    if not isinstance(value, str):
        return value
    try:
        node = ast.parse(value.strip(), mode="eval").body
        return _literal(node)
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(
            f"agent.config: policy_kwargs {value!r} is not a dict(...) of literals ({exc})"
        ) from None


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Attribute):  # nn.ReLU, th.nn.Tanh: the activation's name
        return node.attr
    if isinstance(node, ast.Name) and node.id in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.id]
    return ast.literal_eval(node)


def hparams_overrides(hparams: Mapping[str, Any]) -> list[str]:
    """Overrides (``agent.<key>=...``, ``total_steps=`` ...) of one env's rl_zoo3 settings."""
    from vlmrm.agents.config import hydra_value

    out, skipped = [], []
    noise = (hparams.get("noise_type"), hparams.get("noise_std"))
    for key, value in hparams.items():
        if key in IGNORED:
            skipped.append(key)
        elif key in TOP_LEVEL:
            out.append(f"{TOP_LEVEL[key]}={int(float(value))}")
        elif key == "env_kwargs":
            out.append(f"env.kwargs={hydra_value(dict(value or {}))}")
        elif key in ("noise_type", "noise_std"):
            continue
        elif key == "policy_kwargs":
            out.append(f"agent.policy_kwargs={hydra_value(parse_policy_kwargs(value))}")
        else:
            out.append(f"agent.{key}={hydra_value(value)}")
    if noise[0] is not None:
        out.append(f"agent.action_noise={noise[0]}:{float(noise[1] if noise[1] is not None else 0.1)}")
    if skipped:
        print(f"[vlmrm.train] agent.config: skipping rl_zoo3 keys with no equivalent here: {', '.join(skipped)}",
              file=sys.stderr, flush=True)
    return out
