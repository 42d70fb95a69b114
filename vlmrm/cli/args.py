"""The one argument layer of every command: ``key=value`` settings into a dataclass.

A command's settings are a dataclass whose **field docstrings are its --help text**::

    @dataclass
    class ScoreSettings:
        goal: Any = None
        \"\"\"Goal prompt; a list scores several goals.\"\"\"

and its entry point is thin::

    COMMAND = Command("python -m vlmrm.score", ScoreSettings, "Score videos with a CLIP reward.")

    def main(argv=None) -> int:
        return run(COMMAND, argv, score)      # parse → call the library → exit status

What this module owns, so that no command re-implements it:

* parsing: OmegaConf dot-list syntax (``alpha=[0,0.5,1]``, ``eval.every=1000``), typed by
  the dataclass; ``config=run.yaml`` reads settings from a YAML file first; bare words go
  to the command's positional setting, if it has one;
* unknown keys, answered with the closest known one (``did you mean 'alpha'?``);
* validation: a settings class may define ``validate(self)``, called after parsing; it
  must not import torch, so ``--help`` and every settings error answer in well under a
  second;
* the error policy: any :class:`~vlmrm.errors.VLMRMError` ends the command with **one**
  ``error: ...`` line on stderr and exit status 2; Ctrl-C with status 130. Under torchrun
  a problem every rank shares (bad settings) is printed by rank 0 alone.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import inspect
import os
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

from vlmrm.errors import ConfigError, VLMRMError

T = TypeVar("T")
HELP_FLAGS = ("-h", "--help", "help")
#: A setting every command takes: a YAML file of settings, read before the command line.
CONFIG_KEY = "config"


@dataclass(frozen=True)
class Command:
    """What the argument layer needs to know about one command.

    Attributes:
        prog: how the user runs it, e.g. ``"python -m vlmrm.score"``.
        settings: the settings dataclass.
        summary: one paragraph for the top of ``--help``.
        examples: command lines shown in ``--help``.
        positional: the setting that bare (``key``-less) words are appended to.
        summary: may be a function, for text computed when ``--help`` asks (e.g. the
            option files of a config group).
        parser: replaces :func:`parse_settings` for a command whose settings are composed
            another way (training composes Hydra config groups); it must raise
            :class:`~vlmrm.errors.ConfigError` for bad settings, like the default.
    """

    prog: str
    settings: type
    summary: str | Callable[[], str]
    examples: Sequence[str] = ()
    positional: str | None = None
    parser: Callable[[list[str]], Any] | None = None


# --------------------------------------------------------------------------- field docs


def _class_docs(cls: type) -> dict[str, str]:
    """Docstrings written under the fields of one class body (``x: int = 0`` then ``\"\"\"...\"\"\"``)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # pragma: no cover - classes built at run time
        return {}
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """Every field's docstring, base classes first, so a subclass may re-document a field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_class_docs(klass))
    return docs


def _nested_type(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls``, when it is one (a settings group)."""
    hints = typing.get_type_hints(cls)
    hint = hints.get(name)
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "(required)"


def _setting_rows(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = []
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        nested = _nested_type(cls, f.name)
        if nested is not None:
            rows.extend(_setting_rows(nested, f"{prefix}{f.name}."))
        else:
            rows.append((prefix + f.name, _default(f), docs.get(f.name, "")))
    return rows


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value and value.strip() == value and " " not in value else repr(value)
    return str(value)


def help_text(command: Command) -> str:
    """``--help``: usage, summary, every setting with its default and docstring, examples."""
    pos = f"[{command.positional.upper()} ...] " if command.positional else ""
    summary = command.summary() if callable(command.summary) else command.summary
    lines = [f"usage: {command.prog} {pos}key=value ...", "", summary.strip(), ""]
    lines.append("settings (key=value; default after '='):")
    width = 88
    for key, default, doc in _setting_rows(command.settings):
        lines.append(f"  {key}={_show(default)}")
        if doc:
            lines.extend(textwrap.wrap(doc, width, initial_indent="      ", subsequent_indent="      "))
    lines.append(f"  {CONFIG_KEY}=FILE")
    lines.append("      a YAML file of these settings, read before the command line")
    from vlmrm.sweep.commands import by_prog

    if by_prog(command.prog) is not None:  # -m sweeps: the launcher keys
        from vlmrm.sweep.settings import help_section

        lines += ["", help_section()]
    if command.examples:
        lines += ["", "examples:"] + [f"  {e}" for e in command.examples]
    return "\n".join(lines)


# --------------------------------------------------------------------------- parsing


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _known_keys(cls: type, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for f in dataclasses.fields(cls):
        nested = _nested_type(cls, f.name)
        keys.append(prefix + f.name)
        if nested is not None:
            keys.extend(_known_keys(nested, f"{prefix}{f.name}."))
    return keys


def check_keys(cls: type, keys: Sequence[str], where: str = "") -> None:
    """Refuse a key that is no setting of ``cls``, naming the closest one."""
    known = _known_keys(cls)
    for key in keys:
        if key in known or any(key.startswith(k + ".") and _free_mapping(cls, k) for k in known):
            continue
        parent = next((k for k in known if key.startswith(k + ".") and _owner(cls, k + ".x") is None), None)
        if parent is not None:
            raise ConfigError(
                f"{parent} was read as a mapping ({key!r}); quote values that contain ': ', "
                f"e.g. {parent}='...'"
            )
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown setting {key!r}{where}{hint}; see --help for every setting")


def _owner(cls: type, dotted: str) -> type | None:
    """The settings class that holds the last part of ``dotted`` (``None``: not inside groups)."""
    owner: type = cls
    for part in dotted.split(".")[:-1]:
        nested = _nested_type(owner, part)
        if nested is None:
            return None
        owner = nested
    return owner


def _free_mapping(cls: type, dotted: str) -> bool:
    """Whether ``dotted`` names a ``dict`` setting (any key may be set inside it)."""
    owner = _owner(cls, dotted)
    if owner is None:
        return False
    hint = typing.get_type_hints(owner).get(dotted.split(".")[-1])
    origin = typing.get_origin(hint) or hint
    return origin in (dict, Mapping)


def flat_items(mapping: Mapping, prefix: str = "", stop_at: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a nested mapping, in order.

    Keys in ``stop_at`` are leaves even when their value is a mapping (free sections
    whose inside the caller checks another way).
    """
    items: list[tuple[str, Any]] = []
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and key not in stop_at:
            items.extend(flat_items(v, key + ".", stop_at))
        else:
            items.append((key, v))
    return items


def flat_keys(mapping: Mapping, stop_at: Sequence[str] = ()) -> list[str]:
    """The dotted keys of :func:`flat_items`."""
    return [key for key, _ in flat_items(mapping, stop_at=stop_at)]


def split_argv(argv: Sequence[str], positional: str | None = None) -> tuple[list[str], list[str]]:
    """``key=value`` arguments and bare words; options such as ``--foo`` are refused."""
    pairs: list[str] = []
    bare: list[str] = []
    for arg in argv:
        if not isinstance(arg, str):
            raise ConfigError(f"settings must be strings like key=value, got {arg!r}")
        if arg.startswith("-"):
            raise ConfigError(f"unknown option {arg!r}; settings are key=value (see --help)")
        key, eq, _ = arg.partition("=")
        if eq:
            if not key.strip():
                raise ConfigError(f"missing key before '=' in {arg!r}")
            pairs.append(arg.lstrip("+"))
        elif positional is not None:
            bare.append(arg)
        else:
            raise ConfigError(f"expected key=value, got {arg!r} (see --help for the settings)")
    return pairs, bare


def read_config_file(path: str) -> Any:
    """The settings of a ``config=FILE.yaml`` (an OmegaConf mapping), or one clear line.

    A missing, unreadable, non-UTF-8, malformed or empty file, or one that holds no
    mapping, is a :class:`~vlmrm.errors.ConfigError` naming the file.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        data = OmegaConf.load(path)
    except (OSError, UnicodeError, yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot read {CONFIG_KEY}={path!r}: {_one_line(exc)}") from None
    if data is None or (hasattr(data, "keys") and len(data) == 0):
        raise ConfigError(f"{CONFIG_KEY}={path!r} is empty; write one `key: value` setting per line")
    if not hasattr(data, "keys"):
        raise ConfigError(f"{CONFIG_KEY}={path!r} must hold a mapping of settings")
    return data


def parse_settings(cls: type[T], argv: Sequence[str], positional: str | None = None) -> T:
    """``key=value`` strings → a validated instance of the settings dataclass ``cls``.

    Raises :class:`~vlmrm.errors.ConfigError` with one line for a malformed argument, an
    unknown key (with the closest match), a value of the wrong type, or whatever the
    class's ``validate()`` refuses.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    pairs, bare = split_argv(argv, positional)
    try:
        cli = OmegaConf.from_dotlist(pairs)
    except (OmegaConfBaseException, yaml.YAMLError) as exc:  # a value YAML cannot read: [...]
        raise ConfigError(f"cannot parse the settings {' '.join(pairs)!r}: {_one_line(exc)}") from None
    layers = []
    config_file = cli.pop(CONFIG_KEY, None) if CONFIG_KEY not in _known_keys(cls) else None
    if config_file:
        layer = read_config_file(str(config_file))
        check_keys(cls, flat_keys(layer), f" in {config_file}")
        layers.append(layer)
    check_keys(cls, flat_keys(cli))
    layers.append(cli)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), *layers)
        data = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
        msg = _one_line(exc)
        raise ConfigError(f"bad value for {key!r}: {msg}" if key else f"bad settings: {msg}") from None
    if bare:
        previous = data.get(positional)
        if previous is None:
            previous = []
        elif isinstance(previous, (list, tuple)):
            previous = list(previous)
        else:  # one value given as key=value (a number, a word) beside bare words
            previous = [str(previous)]
        data[positional] = previous + bare
    settings = _build(cls, data)
    validate = getattr(settings, "validate", None)
    if callable(validate):
        checked = validate()
        if checked is not None:
            settings = checked
    return settings


def _build(cls: type[T], data: Mapping[str, Any]) -> T:
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        nested = _nested_type(cls, f.name)
        value = data[f.name]
        kwargs[f.name] = _build(nested, value) if nested is not None and isinstance(value, Mapping) else value
    return cls(**kwargs)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings instance as a plain dict (for ``config.json`` files and resumption checks)."""
    return dataclasses.asdict(settings)


# --------------------------------------------------------------------------- running


def print_text(text: str) -> None:
    """Print to stdout; a reader that closes the pipe early (``--help | head``) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at devnull.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def wants_help(argv: Sequence[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def report_error(exc: BaseException, *, shared: bool = False) -> None:
    """Print ``error: <one line>``; under torchrun a ``shared`` problem only on rank 0.

    A problem is shared when every rank meets it identically (bad settings, a missing
    file all ranks read); an exception may also say so itself with ``exc.shared = True``.
    """
    rank = _rank()
    shared = shared or bool(getattr(exc, "shared", False))
    if shared and rank != 0:
        return
    prefix = f"[rank {rank}] " if rank and not shared else ""
    print(f"{prefix}error: {_one_line(exc)}", file=sys.stderr, flush=True)


def run(command: Command, argv: Sequence[str] | None, body: Callable[[Any], int | None]) -> int:
    """Parse ``argv`` for ``command``, call ``body(settings)`` and return the exit status.

    0 (or what ``body`` returns) on success, 2 with one ``error:`` line for any
    :class:`~vlmrm.errors.VLMRMError` or storage error (:mod:`vlmrm.runtime.storage`),
    130 on Ctrl-C. ``--help`` prints :func:`help_text`.
    ``-m``/``--multirun`` runs a sweep of the command instead (:func:`vlmrm.sweep.cli.multirun`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_help(args):
        if _rank() == 0:  # under torchrun, once for the job
            print_text(help_text(command))
        return 0
    if any(a in ("-m", "--multirun") or a.split("=")[0].split(".")[0].lstrip("+") == "launcher"
           for a in args):
        from vlmrm.sweep.cli import multirun  # a sweep (or its keys): the one shared entry

        return multirun(command, args)
    try:
        if command.parser is not None:
            settings = command.parser(args)
        else:
            settings = parse_settings(command.settings, args, command.positional)
    except VLMRMError as exc:
        report_error(exc, shared=True)
        return 2
    from vlmrm.runtime.console import warnings_as_lines

    try:
        with sigterm_as_interrupt(), warnings_as_lines():
            apply_command_threads(settings)
            try:
                return int(body(settings) or 0)
            finally:
                from vlmrm.runtime.threads import discard_thread_line

                discard_thread_line()
    except VLMRMError as exc:
        report_error(exc)
        return 2
    except OSError as exc:  # a full disk, read-only folder, quota, permission: one line
        from vlmrm.runtime.storage import storage_error_line

        line = storage_error_line(exc, getattr(settings, "out", None))
        if line is None:
            raise
        report_error(VLMRMError(line))
        return 2
    except KeyboardInterrupt:
        from vlmrm.runtime.epilogue import last_word

        last_word("\ninterrupted")  # once for the job; under torchrun after the launcher's output
        return 130


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM (a scheduler's stop, torchrun passing one on) acts as Ctrl-C.

    Python's default would end the process at once, without the closing line and the
    clean-up a Ctrl-C gets. A :class:`~vlmrm.runtime.stop.GracefulStop` inside (training,
    tuning) still takes both signals over while it is active.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def apply_command_threads(settings: Any) -> None:
    """A command's ``threads=`` policy (:mod:`vlmrm.runtime.threads`), applied for the process
    before the command starts; its line is printed once (on rank 0) with the command's
    setup, when the command loads its CLIP (:func:`vlmrm.load_clip`): a settings error
    found before that stays the command's one line. With ``progress=false`` (plain logs,
    where a stop or an error is the only line on stderr) it is not printed.

    Commands whose settings have no ``threads`` field (training applies its own, counting
    its env worker processes) are left alone.
    """
    if not dataclasses.is_dataclass(settings) or not hasattr(settings, "threads"):
        return
    from vlmrm.runtime.threads import apply_threads

    apply_threads(settings.threads, announce=_rank() == 0 and getattr(settings, "progress", True) is not False)


def entry_point(command: Command, body: Callable[[Any], int | None]) -> Callable[[Sequence[str] | None], int]:
    """``main = entry_point(COMMAND, body)``: the ``main(argv)`` of a ``python -m`` module."""

    def main(argv: Sequence[str] | None = None) -> int:
        return run(command, argv, body)

    main.__doc__ = f"Entry point of ``{command.prog}``; returns the exit status."
    return main
