"""The commands a sweep can run, and how each places and resumes a job's run folder.

One row per command that accepts ``-m``: where a job's output goes (the command's own
output key, pointed into the sweep folder) and how a job that was stopped continues.

=============== ======================================== ===========================================
command         a job's run folder                       resumed by
=============== ======================================== ===========================================
train           ``out=<sweep>/runs run_name=NNN``        ``resume=<run dir>`` (its latest checkpoint)
tune            ``out=<sweep>/runs/NNN``                 the same arguments (``resume=auto``)
tune.finetune   ``out=<sweep>/runs/NNN``                 the same arguments (it continues in ``out``)
tta             ``out=<sweep>/runs/NNN``                 the same arguments (finished samples skipped)
caption.train   ``out=<sweep>/runs/NNN``                 the same arguments (``resume=true``)
=============== ======================================== ===========================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """How one run of a job's command ended."""

    status: int
    signal: str = ""  # the signal that stopped it with a checkpoint (SIGUSR2...), else ""
    result: dict | None = None  # {"steps": ..., "final_eval": {...}} when the command reports it


@dataclass(frozen=True)
class SweepCommand:
    """One sweepable command."""

    name: str
    module: str
    prog: str
    #: its default output folder (the sweep folder goes under ``<out>/multirun/``)
    default_out: str
    #: a rerun continues from a saved run folder by ``resume=<run dir>`` (training) rather
    #: than by repeating the same arguments
    resume_key: bool = False

    def job_argv(self, argv: list[str], run_dir: Path, threads: int | None = None) -> list[str]:
        """The arguments of one run of a job: its own, its run folder, resumed when it has started."""
        argv = [a for a in argv if a.partition("=")[0].lstrip("+") not in ("out", "run_name")]
        if self.resume_key:
            if (run_dir / "config.yaml").is_file():
                args = [f"resume={run_dir}"]
            else:
                args = [*argv, f"out={run_dir.parent}", f"run_name={run_dir.name}"]
            if threads and not any(a.partition("=")[0].lstrip("+") == "threads" for a in argv):
                args.append(f"threads={threads}")
            return args
        return [*argv, f"out={run_dir}"]

    def execute(self, argv: list[str]) -> Outcome:
        """Run the command in this process (its own argument layer and error policy)."""
        return _EXECUTORS.get(self.name, _execute_main)(self, argv)


def _command_module(name: str) -> Any:
    """A command's module, imported by name as the console dispatcher does: the sweep layer
    sits under the commands and imports none of them."""
    import importlib

    return importlib.import_module(name)


def _execute_main(command: SweepCommand, argv: list[str]) -> Outcome:
    """Any command: its ``main(argv)``; status 130 is a stop by a signal (the one its graceful stop took)."""
    from vlmrm.runtime import stop

    stop.GracefulStop.last = None
    status = int(_command_module(command.module).main(argv) or 0)
    last = stop.GracefulStop.last
    if status == 130:  # stopped by a signal (saved what it can resume from), not failed
        import signal

        return Outcome(0, signal.Signals(last).name if last is not None else "SIGINT")
    return Outcome(status)


def _execute_train(command: SweepCommand, argv: list[str]) -> Outcome:
    status, result = _command_module(command.module).run_job(argv)
    if result is None:
        return Outcome(0, "SIGINT") if status == 130 else Outcome(status)
    if result.interrupted:
        return Outcome(status, result.signal or "SIGINT")
    return Outcome(status, "", {"steps": int(result.steps), "final_eval": result.final_eval})


_EXECUTORS: dict[str, Callable[[SweepCommand, list[str]], Outcome]] = {"train": _execute_train}

COMMANDS: dict[str, SweepCommand] = {
    c.name: c for c in (
        SweepCommand("train", "vlmrm.train", "python -m vlmrm.train", "runs", resume_key=True),
        SweepCommand("tune", "vlmrm.tune.cli", "python -m vlmrm.tune", os.path.join("runs", "tune")),
        SweepCommand("tune.finetune", "vlmrm.tune.finetune", "python -m vlmrm.tune.finetune",
                     os.path.join("runs", "finetune")),
        SweepCommand("tta", "vlmrm.tta.cli", "python -m vlmrm.tta", os.path.join("runs", "tta")),
        SweepCommand("caption.train", "vlmrm.caption.train", "python -m vlmrm.caption.train",
                     os.path.join("runs", "caption")),
    )
}


def by_prog(prog: str) -> SweepCommand | None:
    """The sweepable command run as ``prog`` (``python -m vlmrm.tune``), if it is one."""
    return next((c for c in COMMANDS.values() if c.prog == prog), None)
