"""The ``vlmrm`` console script: ``vlmrm <command> key=value ...``, and the argument layer.

``vlmrm <command>`` runs the same ``main(argv)`` as ``python -m vlmrm.<command>``; this
file only dispatches, so the two spellings never drift apart. The argument layer every
command is built on lives in :mod:`vlmrm.cli.args`, the shared settings in
:mod:`vlmrm.cli.vocabulary`.
"""

from __future__ import annotations

import importlib
import sys

#: command → (the module whose ``main`` it runs, one line of help); ``python -m`` runs the
#: same ``main`` (a package's through its ``__main__``)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("vlmrm.train", "train an SB3 agent on a CLIP reward"),
    "study": ("vlmrm.study.cli", "a sweep's table: IQM over seeds with bootstrap intervals, curves, HTML"),
    "evaluate": ("vlmrm.evaluate", "roll out a trained checkpoint: video, returns, success"),
    "score": ("vlmrm.score", "score videos with a CLIP reward (CSV, plots, diagnostics)"),
    "record": ("vlmrm.record", "roll out an env, record a video and score it"),
    "tta": ("vlmrm.tta.cli", "RLCF test-time adaptation of CLIP (and of a captioner)"),
    "caption.train": ("vlmrm.caption.train", "train a CLIP-prefix captioner's mapper (ClipCap/CapDec)"),
    "caption.rerank": ("vlmrm.caption.rerank", "caption-and-rerank with a CLIP reward (our captioner or BLIP)"),
    "tune": ("vlmrm.tune.cli", "preference-tune / fine-tune a CLIP reward model"),
    "tune.build": ("vlmrm.tune.build", "ranked sets with hard negatives from image-caption data"),
    "tune.rollouts": ("vlmrm.tune.rollouts", "build a tuning dataset from env rollouts"),
    "tune.eval": ("vlmrm.tune.eval", "evaluate a CLIP checkpoint: VSR, preferences, retrieval vs untuned"),
    "tune.vsr_pairs": ("vlmrm.tune.vsr_pairs", "preference pairs from VSR rows (relation swaps)"),
    "tune.finetune": ("vlmrm.tune.finetune", "fine-tune CLIP on image-caption data (SFT, RL, WiSE-FT)"),
    "label": ("vlmrm.label.cli", "labelling sheets of frames from training runs or videos"),
    "label.agreement": ("vlmrm.label.agreement", "a CLIP reward's agreement with filled labelling sheets"),
}
#: other spellings users type
ALIASES = {"rollouts": "tune.rollouts", "build": "tune.build"}


def _usage() -> str:
    lines = ["usage: vlmrm <command> [key=value ...]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`vlmrm <command> --help` lists a command's settings.")
    return "\n".join(lines)


def load_main(module: str):
    """The ``main(argv)`` of a command module."""
    return importlib.import_module(module).main


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
