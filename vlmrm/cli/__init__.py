"""The ``vlmrm`` console script: ``vlmrm <command> key=value ...``.

Each command is the ``main(argv)`` of a module that also runs as ``python -m``; this
file only dispatches, so the two spellings never drift apart.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("vlmrm.train",), "train an SB3 agent on a CLIP reward"),
    "evaluate": (("vlmrm.evaluate",), "roll out a trained checkpoint: video, returns, success"),
    "score": (("vlmrm.score",), "score videos with a CLIP reward (CSV, plots, diagnostics)"),
    "record": (("vlmrm.record",), "roll out an env, record a video and score it"),
    "tta": (("vlmrm.tta.cli", "vlmrm.tta.__main__"), "RLCF test-time adaptation of CLIP"),
    "tune": (("vlmrm.tune.cli", "vlmrm.tune.__main__"), "preference-tune a CLIP reward model"),
    "rollouts": (("vlmrm.tune.rollouts",), "build a tuning dataset from env rollouts"),
}


def _usage() -> str:
    lines = ["usage: vlmrm <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`vlmrm <command> --help` lists a command's options.")
    return "\n".join(lines)


def _load_main(modules: tuple[str, ...]):
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        if hasattr(module, "main"):
            return module.main
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"vlmrm: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    entry = _load_main(COMMANDS[command][0])
    if entry is None:
        print(f"vlmrm: the {command!r} command is not available in this installation", file=sys.stderr)
        return 2
    result = entry(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
