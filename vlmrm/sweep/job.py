"""One job of a sweep: run its command in this process and record how it ended.

:func:`run_job` is the same for every launcher: ``basic`` calls it in the sweep's own
process, submitit calls :class:`SweepJob` in a worker. It marks the job ``running``, runs
the command on the job's run folder (resumed when it has one), and writes the outcome into
``sweep.json``: ``done`` with the run's result; ``failed`` with its last ``error:`` line (not
retried: a bad setting fails again); ``preempted`` when a signal stopped it with a checkpoint.

Pre-emption under submitit follows submitit's checkpoint protocol, at a safe point: the
run's :class:`~vlmrm.runtime.stop.GracefulStop` turns SIGUSR1/SIGUSR2 into a checkpoint at
the current step; then the job raises submitit's pre-emption signal again in its own
process, where submitit's handler calls :meth:`SweepJob.checkpoint` (which counts the
requeue and resubmits the same job, which resumes the run folder) and requeues it (the
local controller restarts the task; on SLURM ``scontrol requeue``).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from vlmrm.sweep.commands import COMMANDS, Outcome
from vlmrm.sweep.state import SweepState

#: Signals a scheduler sends before it pre-empts or times out a job: requeue after them.
PREEMPT_SIGNALS = ("SIGUSR1", "SIGUSR2")


class _ErrorLines(io.TextIOBase):
    """stderr that passes everything on and remembers the last ``error:`` line."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.last: str | None = None
        self._partial = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            line = line.strip()
            if line.startswith("error:") or (line.startswith("[rank") and "error:" in line):
                self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()


def _job_id() -> str | None:
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # noqa: BLE001 - not under submitit
        return None


def run_job(folder: str | os.PathLike, index: int, cpus: list[int] | None = None,
            under_submitit: bool = False) -> str:
    """Run job ``index`` of the sweep in ``folder``; returns its new state."""
    if under_submitit and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops this job
    state = SweepState(folder)
    doc = state.read()
    command = COMMANDS[doc["command"]]
    entry = doc["jobs"][index]
    run_dir = (state.folder / entry["run_dir"]).resolve()
    state.update_job(index, state="running", started=entry.get("started") or time.time(), ended=None,
                     pid=os.getpid(), host=socket.gethostname(), job_id=_job_id() or entry.get("job_id"),
                     error=None, gpus=os.environ.get("CUDA_VISIBLE_DEVICES") if under_submitit else None)
    threads = None
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)  # the thread policy then sees this job's share
        except (AttributeError, OSError):
            pass
        threads = len(cpus)
    argv = command.job_argv(list(entry["argv"]), run_dir, threads)
    print(f"[vlmrm.sweep] job {index}: {command.prog} {' '.join(argv)}", file=sys.stderr, flush=True)
    errors = _ErrorLines(sys.stderr)
    sys.stderr = errors
    try:
        outcome = command.execute(argv)
    except Exception as exc:  # noqa: BLE001 - the sweep goes on; the job records why it failed
        first = (str(exc).strip().splitlines() or [""])[0]
        outcome, errors.last = Outcome(1), f"error: {type(exc).__name__}: {first}".rstrip(": ")
    finally:
        sys.stderr = errors.stream
    now = time.time()
    if outcome.signal:
        state.update_job(index, state="preempted", ended=now, signal=outcome.signal)
        if under_submitit and outcome.signal in PREEMPT_SIGNALS:
            _requeue()
        return "preempted"
    if outcome.status != 0:
        error = errors.last or f"error: exit status {outcome.status}"
        state.update_job(index, state="failed", ended=now, error=error)
        return "failed"
    state.update_job(index, state="done", ended=now, result=outcome.result or _result(run_dir))
    return "done"


def _result(run_dir: Path) -> dict | None:
    """A run's result from its folder when the command does not report one (``metrics.json``)."""
    import json

    for name in ("metrics.json", "summary.json"):
        path = run_dir / name
        if path.is_file():
            try:
                return {"metrics": json.loads(path.read_text(encoding="utf-8"))}
            except (OSError, ValueError):
                return None
    return None


def _requeue() -> None:
    """Hand the stopped job to submitit's own pre-emption handler: checkpoint() and requeue."""
    from submitit.core.job_environment import JobEnvironment

    env = JobEnvironment()
    signal.raise_signal(env._usr_sig())  # submitit's handler runs here and exits the process


try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is a dependency
    _Checkpointable = object  # type: ignore[assignment,misc]


class SweepJob(_Checkpointable):
    """The submitit job function of a sweep: ``SweepJob(folder)(index, cpus)``.

    On pre-emption submitit calls :meth:`checkpoint`, which counts the requeue in
    ``sweep.json`` and resubmits the same call; the job then resumes its run folder.
    """

    def __init__(self, folder: str) -> None:
        self.folder = str(folder)

    def __call__(self, index: int, cpus: list[int] | None = None) -> str:
        return run_job(self.folder, index, cpus, under_submitit=True)

    def checkpoint(self, index: int, cpus: list[int] | None = None) -> Any:
        from submitit.helpers import DelayedSubmission

        state = SweepState(self.folder)
        with state.update() as doc:
            entry = doc["jobs"][index]
            entry["requeues"] = int(entry.get("requeues") or 0) + 1
            if entry.get("state") == "running":  # pre-empted before a graceful stop
                entry["state"] = "preempted"
        return DelayedSubmission(SweepJob(self.folder), index, cpus)
