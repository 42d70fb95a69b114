"""Hydra-style sweep expansion: one job per combination of the swept values.

``-m seed=0,1,2 reward.alpha=0,0.5`` is Hydra's multirun grammar, parsed by Hydra's own
override parser (so ``seed=range(0,3)`` and ``agent=sac,td3`` work too); every combination
is one :class:`Job`, the last swept key varying fastest.

Free-text keys (``goal``, ``baseline``, ``out``...) keep an unquoted comma as text, as a
prompt often holds one. Quoted values sweep them with the same grammar, so a comma inside
quotes stays text: ``"goal='kneeling, arms up','sitting'"`` is two jobs. ``goal_file=FILE``
sweeps the prompts of a file, one job per non-empty line (a line may be a YAML list of
prompts, averaged as ``goal=[a,b]`` is).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlmrm.errors import ConfigError

#: ``KEY_file=FILE`` sweeps ``KEY`` over the lines of ``FILE`` for these prompt keys.
PROMPT_FILE_KEYS = {"goal_file": "goal", "baseline_file": "baseline"}


@dataclass
class Job:
    """One combination of a sweep: its swept values and its full argument list."""

    index: int
    swept: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.swept.items()) or "(no swept keys)"


def _quoted(value: str) -> bool:
    return "'" in value or '"' in value


def unquote(value: str) -> str:
    """A swept value without the one pair of quotes Hydra's grammar kept around it."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].replace("\\" + value[0], value[0])
    return value


def _sweep_values(arg: str, text_keys: frozenset[str]) -> tuple[str, list[str]] | None:
    """``(key, values)`` when ``arg`` is a sweep (``seed=0,1``), else ``None``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    key, sep, value = arg.partition("=")
    if not sep or arg.startswith("~"):
        return None
    if key.lstrip("+").rsplit(".", 1)[-1] in text_keys and not _quoted(value):
        return None  # an unquoted comma in free text is part of the text
    try:
        override = OverridesParser.create().parse_overrides([arg])[0]
    except HydraException:
        return None
    if not override.is_sweep_override():
        return None
    try:
        values = list(override.sweep_string_iterator())
    except HydraException as exc:
        raise ConfigError(f"cannot sweep {arg!r}: {str(exc).splitlines()[0]}") from None
    if not values:
        raise ConfigError(f"{arg!r} sweeps no value")
    # Hydra escapes its special characters in an unquoted value (``gym\:Env-v0``); the
    # command reads the value as typed.
    return key, [v if _quoted(v[:1]) else re.sub(r"\\(.)", r"\1", v) for v in values]


def _prompt_file(arg: str) -> tuple[str, list[str]] | None:
    """``goal_file=FILE`` → ``("goal", [one value per non-empty line])``."""
    key, sep, path = arg.partition("=")
    target = PROMPT_FILE_KEYS.get(key.lstrip("+"))
    if not sep or target is None:
        return None
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"{key}={path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); "
                          f"write one prompt per line") from None
    values = []
    for line in (ln.strip() for ln in lines):
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            values.append(line)  # a YAML list of prompts: one averaged goal
        else:
            values.append("'" + line.replace("\\", "\\\\").replace("'", "\\'") + "'")
    if not values:
        raise ConfigError(f"{key}={path} holds no prompt; write one prompt per line")
    return target, values


def expand_sweep(argv: Sequence[str], text_keys: frozenset[str] = frozenset()) -> list[Job]:
    """Every combination of the swept values in ``argv`` (the last swept key varies fastest).

    A job's ``swept`` values are as Hydra expanded them, free text without its quotes.
    """
    fixed: list[tuple[int, str]] = []
    swept: list[tuple[int, str, list[str]]] = []
    for i, arg in enumerate(argv):
        found = _prompt_file(arg) or _sweep_values(arg, text_keys)
        if found is None:
            fixed.append((i, arg))
        else:
            swept.append((i, *found))
    jobs = []
    for n, combo in enumerate(itertools.product(*(values for _, _, values in swept))):
        args = dict(fixed)
        for (i, key, _), value in zip(swept, combo, strict=True):
            args[i] = f"{key}={value}"
        values = {}
        for (_, key, _), value in zip(swept, combo, strict=True):
            bare = key.lstrip("+")
            values[bare] = unquote(value) if bare.rsplit(".", 1)[-1] in text_keys else value
        jobs.append(Job(n, values, [args[i] for i in sorted(args)]))
    return jobs
