"""The ``vlmrm`` console script: ``vlmrm <command> key=value ...``, and the argument layer.

``vlmrm <command>`` runs the same ``main(argv)`` as ``python -m vlmrm.<command>``; this
file only dispatches, so the two spellings never drift apart. The argument layer every
command is built on lives in :mod:`vlmrm.cli.args`, the shared settings in
:mod:`vlmrm.cli.vocabulary`.
"""

from __future__ import annotations

import importlib
import sys

#: command → (its ``python -m`` module, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("vlmrm.train", "train an SB3 agent on a CLIP reward"),
    "evaluate": ("vlmrm.evaluate", "roll out a trained checkpoint: video, returns, success"),
    "score": ("vlmrm.score", "score videos with a CLIP reward (CSV, plots, diagnostics)"),
    "record": ("vlmrm.record", "roll out an env, record a video and score it"),
    "tta": ("vlmrm.tta", "RLCF test-time adaptation of CLIP"),
    "tune": ("vlmrm.tune", "preference-tune / fine-tune a CLIP reward model"),
    "tune.build": ("vlmrm.tune.build", "ranked sets with hard negatives from image-caption data"),
    "tune.rollouts": ("vlmrm.tune.rollouts", "build a tuning dataset from env rollouts"),
}
#: other spellings users type
ALIASES = {"rollouts": "tune.rollouts", "build": "tune.build"}


def _usage() -> str:
    lines = ["usage: vlmrm <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`vlmrm <command> --help` lists a command's settings.")
    return "\n".join(lines)


def load_main(module: str):
    """The ``main(argv)`` of a ``python -m`` module (a package's is in its ``__main__``)."""
    mod = importlib.import_module(module)
    if not hasattr(mod, "main") and hasattr(mod, "__path__"):
        mod = importlib.import_module(f"{module}.__main__")
    return mod.main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = ALIASES.get(argv[0], argv[0]), argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return int(load_main(COMMANDS[command][0])(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
