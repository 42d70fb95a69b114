"""``-m``/``--multirun`` for every sweepable command: the one shared entry.

:func:`vlmrm.cli.args.run` hands a command line holding ``-m`` to :func:`multirun`: the
launcher keys and ``run_name=`` are taken out, the rest is expanded into jobs, every job's
settings are checked before any runs, the sweep folder ``<out>/multirun/<run_name>/`` and
its ``sweep.json`` are written, the launcher runs the jobs, and a summary table (read from
``sweep.json``) ends it. ``-m resume=<sweep folder>`` runs again the jobs that are not
``done``, each resuming its own run folder, with the launcher given now (or the saved one).

Exit status: 0 when every job is done (or the sweep stopped cleanly on a signal), 1 with
one ``error:`` line naming the jobs that failed, 2 for a bad setting, 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.sweep.commands import COMMANDS, SweepCommand, by_prog
from vlmrm.sweep.expand import Job, expand_sweep
from vlmrm.sweep.settings import split_sweep_args
from vlmrm.sweep.state import VERSION, SweepState, is_sweep_folder, new_entry

MULTIRUN_FLAGS = ("-m", "--multirun")


def text_keys() -> frozenset[str]:
    """Free-text keys: an unquoted comma in them is text, not a sweep."""
    from vlmrm.agents.config import TEXT_KEYS

    return TEXT_KEYS | {"data", "images", "image_root", "captioner", "lm", "goal_file"}


def _check_job(command: Any, job: Job) -> str | None:
    """Parse a job's settings as its command will: its ``error:`` line, or ``None`` when good."""
    from vlmrm.cli.args import _one_line, parse_settings

    try:
        if command.parser is not None:
            command.parser(job.argv)
        else:
            parse_settings(command.settings, job.argv, command.positional)
    except ConfigError as exc:
        return f"error: {_one_line(exc)}"
    return None


def _check_jobs(command: Any, jobs: Sequence[Job]) -> dict[int, str | None]:
    """:func:`_check_job` for every job; a notice the checks print (the same for every job of
    a grid, e.g. a step count rounded to a rollout) is shown once, not once per job."""
    import contextlib
    import io

    errors: dict[int, str | None] = {}
    seen: list[str] = []
    for job in jobs:
        buffer = io.StringIO()
        with contextlib.redirect_stderr(buffer):
            errors[job.index] = _check_job(command, job)
        seen += [line for line in buffer.getvalue().splitlines() if line not in seen]
    for line in seen:
        print(line, file=sys.stderr, flush=True)
    return errors


def _sweep_folder(spec: SweepCommand, argv: Sequence[str], name: str | None) -> Path:
    outs = [a.split("=", 1)[1].strip().strip("'\"") for a in argv if a.partition("=")[0].lstrip("+") == "out"]
    root = Path(outs[-1] if outs and outs[-1] else spec.default_out).expanduser() / "multirun"
    if name:
        folder = root / name
        if is_sweep_folder(folder):
            raise ConfigError(f"{folder} already holds a sweep; continue it with -m resume={folder} "
                              "or pass another run_name=")
        return folder
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = root / stamp, 1
    while folder.exists():
        n += 1
        folder = root / f"{stamp}-{n}"
    return folder


def _resume_folder(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """``resume=<sweep folder>`` (and the other arguments), when the command line resumes a sweep."""
    found, rest = None, []
    for arg in argv:
        key, _, value = arg.partition("=")
        value = value.strip().strip("'\"")
        if key.lstrip("+") == "resume" and value and is_sweep_folder(value):
            found = Path(value)
        else:
            rest.append(arg)
    return found, rest


def new_sweep(command: Any, spec: SweepCommand, argv: list[str]) -> tuple[SweepState, Any, list[int]]:
    """Expand, check and write a new sweep folder; returns it, the launcher and the jobs to run."""
    from vlmrm.sweep.launchers import check_launcher

    settings, name, rest = split_sweep_args(argv)
    check_launcher(settings)
    if spec.resume_key and any(a.partition("=")[0].lstrip("+") == "resume" for a in rest):
        raise ConfigError("-m resume= takes a sweep folder (one holding sweep.json), "
                          "<out>/multirun/<name>; resume a single run without -m")
    jobs = expand_sweep(rest, text_keys())
    # Every job's settings are checked before any runs: a mistake all jobs share ends the
    # sweep at once; a job of its own bad settings (one env id of several) is marked failed
    # and the others run.
    errors = _check_jobs(command, jobs)
    if all(errors.values()):
        first = jobs[0]
        raise ConfigError(f"{errors[0].removeprefix('error: ')}" + (
            f" (every job; job 0: {first.label})" if len(jobs) > 1 else ""))
    folder = _sweep_folder(spec, rest, name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the sweep folder {folder} ({exc.strerror or exc}); "
                          "pass out=<a writable folder>") from None
    state = SweepState(folder)
    state.write({
        "version": VERSION,
        "command": spec.name,
        "command_line": shlex.join([*spec.prog.split(), "-m", *argv]),
        "argv": list(argv),
        "name": folder.name,
        "created": time.time(),
        "launcher": settings.to_dict(),
        "swept_keys": list(jobs[0].swept) if jobs else [],
        "jobs": [new_entry(j.index, j.swept, j.argv) for j in jobs],
    })
    now = time.time()
    for index, error in errors.items():
        if error:
            state.update_job(index, state="failed", ended=now, error=error)
            print(f"[vlmrm.sweep] job {index} ({jobs[index].label}) not run: {error}", file=sys.stderr)
    return state, settings, [j.index for j in jobs if not errors[j.index]]


def resume_sweep(spec: SweepCommand, folder: Path, argv: list[str]) -> tuple[SweepState, Any, list[int]]:
    """The jobs of a sweep folder that are not done, with the launcher given now (else the saved one)."""
    from vlmrm.sweep.launchers import check_launcher

    state = SweepState(folder)
    doc = state.read()
    if doc.get("command") != spec.name:
        raise ConfigError(f"{folder} is a sweep of vlmrm {doc.get('command')}; resume it with "
                          f"python -m vlmrm.{doc.get('command')} -m resume={folder}")
    settings, _, rest = split_sweep_args(argv, base=doc.get("launcher"))
    if rest:
        raise ConfigError(f"-m resume={folder} runs the sweep's own settings; only launcher keys "
                          f"may change (got {' '.join(rest)})")
    check_launcher(settings)
    with state.update() as doc:
        doc["launcher"] = settings.to_dict()
        doc.setdefault("resumed", []).append(time.time())
        todo = [e["index"] for e in doc["jobs"] if e["state"] != "done"]
        for entry in doc["jobs"]:
            if entry["index"] in todo:
                entry.update(state="pending", error=None, ended=None)
    return state, settings, todo


def multirun(command: Any, argv: Sequence[str]) -> int:
    """``<command> -m ...``: run the sweep; the exit status (see the module docstring)."""
    from vlmrm.cli.args import report_error
    from vlmrm.sweep.launchers import launch, say

    spec = by_prog(command.prog)
    args = [a for a in argv if a not in MULTIRUN_FLAGS]
    try:
        if spec is None:
            raise ConfigError(f"{command.prog} takes no -m (sweeps: {', '.join(COMMANDS)})")
        if not any(a in MULTIRUN_FLAGS for a in argv):
            raise ConfigError(f"launcher= and launcher.* are sweep settings: add -m ({spec.prog} -m "
                              "seed=0,1 launcher=submitit_local)")
        folder, rest = _resume_folder(args)
        state, settings, todo = (resume_sweep(spec, folder, rest) if folder is not None
                                 else new_sweep(command, spec, args))
    except ConfigError as exc:
        report_error(exc, shared=True)
        return 2
    say(f"sweep folder: {state.folder} ({len(todo)} job{'s' if len(todo) != 1 else ''} to run, "
        f"launcher={settings.name})")
    from vlmrm.cli.args import sigterm_as_interrupt

    interrupted = False
    try:
        with sigterm_as_interrupt():  # a scheduler's SIGTERM stops the sweep as Ctrl-C does
            if todo:
                launch(state, settings, todo)
    except KeyboardInterrupt:
        interrupted = True
    doc = state.read()
    print_summary(doc, state.folder)
    if interrupted:
        print(f"interrupted; continue with: {spec.prog} -m resume={state.folder}", file=sys.stderr)
        return 130
    failed = [e for e in doc["jobs"] if e["state"] == "failed"]
    if failed:
        names = ", ".join(f"{e['index']} ({_label(e)})" for e in failed)
        print(f"error: {len(failed)} of {len(doc['jobs'])} jobs failed: {names}; see the table above; "
              f"rerun them with: {spec.prog} -m resume={state.folder}", file=sys.stderr, flush=True)
        return 1
    return 0


def _label(entry: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in entry["swept"].items()) or "(no swept keys)"


def summary_table(doc: dict, folder: Path):
    """A rich table from ``sweep.json``: one row per job, its settings, state, steps, returns, run."""
    from rich.table import Table

    jobs = doc["jobs"]
    done = sum(e["state"] == "done" for e in jobs)
    table = Table(title=f"sweep {doc.get('name', '')}: {len(jobs)} jobs, {done} done")
    for column in ("job", "settings", "state", "steps", "gt return", "CLIP return", "run"):
        table.add_column(column, justify="right" if column in ("job", "steps") else "left")
    for e in jobs:
        result = e.get("result") or {}
        final = result.get("final_eval") or {}
        table.add_row(
            str(e["index"]), _label(e), e["state"], str(result.get("steps", "")),
            _fmt(final.get("gt_return")), _fmt(final.get("clip_return")), os.fspath(folder / e["run_dir"]),
        )
    return table


def print_summary(doc: dict, folder: Path) -> None:
    from vlmrm.runtime.console import make_console

    if os.environ.get("RANK", "0") in ("", "0"):
        make_console().print(summary_table(doc, folder))
    failed = [e for e in doc["jobs"] if e["state"] == "failed" and e.get("error")]
    for e in failed:
        print(f"  job {e['index']}: {e['error']}", file=sys.stderr)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"
