"""``python -m vlmrm.tune key=value ...`` — preference tuning from the command line.

Settings are the fields of :class:`vlmrm.tune.trainer.TuneConfig`, given as
``key=value`` (OmegaConf dot-list syntax); ``config=run.yaml`` reads a YAML file of
them first. Any bad setting ends the run with one ``error: ...`` line and exit code 2;
an interrupted run (Ctrl-C, SIGTERM) saves a checkpoint and exits with 130.

Examples::

    python -m vlmrm.tune loss=dpo data=ranked.jsonl model=ViT-B-32/openai beta=0.1
    python -m vlmrm.tune loss=ipo data=ranked.jsonl lock=image train_params=attn_in_proj
    python -m vlmrm.tune loss=reinforce data=ranked.jsonl kl_coef=0.1 num_samples=8
    python -m vlmrm.tune data=ranked.jsonl steps=0 vsr=vsr/test.jsonl   # evaluate only
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

from vlmrm.errors import ConfigError, VLMRMError

T = TypeVar("T")

USAGE = """usage: python -m vlmrm.tune key=value ... [config=run.yaml]

Preference-tune a CLIP reward model (DPO/IPO/hinge/BT/listwise/contrastive/REINFORCE).
Settings (default):
"""


def parse_dotlist(schema: type[T], argv: Sequence[str], extra_keys: Sequence[str] = ("config",)) -> T:
    """``key=value`` strings → an instance of the dataclass ``schema``.

    Unknown keys, malformed arguments and values of the wrong type each raise one
    :class:`ConfigError` line naming the key (with a close match when there is one).
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    fields = {f.name for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    args = list(argv)
    for a in args:
        if "=" not in a or a.startswith("="):
            raise ConfigError(f"arguments must look like key=value, got {a!r} (see --help)")
    try:
        cli = OmegaConf.from_dotlist(args)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse arguments: {str(exc).splitlines()[0]}") from None
    layers: list[Any] = []
    config_file = cli.pop("config", None) if "config" in extra_keys else None
    if config_file:
        try:
            layers.append(OmegaConf.load(str(config_file)))
        except (OSError, OmegaConfBaseException) as exc:
            raise ConfigError(f"cannot read config file {config_file!r}: {str(exc).splitlines()[0]}") from None
    layers.append(cli)
    for layer in layers:
        for key in layer:
            if key not in fields:
                close = difflib.get_close_matches(str(key), sorted(fields), n=3)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                raise ConfigError(f"unknown setting {key!r}{hint} (see --help for all settings)")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), *layers)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
        first = str(exc).splitlines()[0]
        raise ConfigError(f"bad value for {key!r}: {first}" if key else f"bad settings: {first}") from None


def usage(schema: type, header: str = USAGE) -> str:
    """The help text: ``header`` then every setting with its default."""
    lines = [header]
    for f in dataclasses.fields(schema):
        default = f.default if f.default is not dataclasses.MISSING else None
        lines.append(f"  {f.name}={default!r}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.tune``; returns the exit code."""
    from vlmrm.tune.trainer import TuneConfig, train

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in args):
        print(usage(TuneConfig))
        return 0
    try:
        cfg = parse_dotlist(TuneConfig, args)
        result = train(cfg)
    except VLMRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 130 if result.interrupted else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
