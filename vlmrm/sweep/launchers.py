"""The launchers: run the pending jobs of a sweep folder and wait for them.

* ``basic``: one job after another in this process (a stop signal ends the sweep after the
  current job's checkpoint; ``-m resume=<sweep>`` continues);
* ``submitit_local``: submitit's local executor, ``launcher.parallel`` worker processes at
  once; each job is given one GPU (``CUDA_VISIBLE_DEVICES``) when there are GPUs and its
  share of the cores (its CPU affinity; the thread policy follows it);
* ``submitit_slurm``: a SLURM job array through submitit (``%parallel`` throttle,
  ``--signal=USR2@launcher.signal_delay_s`` for a checkpoint before the time limit).

The submitit launchers watch ``sweep.json`` (the jobs write their own states) and print a
line as a job's state changes; a job whose process ended without recording an outcome
(killed, out of memory) is marked ``failed`` with the end of its log.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vlmrm.errors import ConfigError
from vlmrm.sweep.settings import LauncherSettings, cores, cuda_devices, default_parallel
from vlmrm.sweep.state import FINAL, SweepState

#: How often a submitit launcher looks at the jobs (seconds).
POLL_S = 0.25
#: How often it asks SLURM (sacct) whether a job is still there.
SLURM_POLL_S = 15.0
#: After Ctrl-C, how long the local launcher waits for each job to save its checkpoint.
STOP_WAIT_S = 300.0


def say(msg: str) -> None:
    print(f"[vlmrm.sweep] {msg}", file=sys.stderr, flush=True)


def _label(entry: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in entry["swept"].items()) or "(no swept keys)"


def check_launcher(settings: LauncherSettings) -> None:
    """Refuse a launcher this machine cannot use, before anything is written."""
    if settings.name == "submitit_slurm" and shutil.which("sbatch") is None:
        raise ConfigError("launcher=submitit_slurm needs a SLURM cluster (sbatch not found); "
                          "on one machine use launcher=submitit_local")


def launch(state: SweepState, settings: LauncherSettings, indices: list[int]) -> None:
    """Run the jobs ``indices`` of the sweep with the launcher ``settings.name``."""
    {"basic": _basic, "submitit_local": _local, "submitit_slurm": _slurm}[settings.name](state, settings, indices)


def _basic(state: SweepState, settings: LauncherSettings, indices: list[int]) -> None:
    from vlmrm.sweep.job import run_job

    doc = state.read()
    for n, index in enumerate(indices):
        say(f"job {index} ({n + 1}/{len(indices)}): {_label(doc['jobs'][index])}")
        if run_job(state.folder, index) == "preempted":
            say("stopped by a signal; continue the sweep with: "
                f"python -m vlmrm.{doc['command']} -m resume={state.folder}")
            break


class _Watcher:
    """Prints each job's state as it changes, and marks a job that vanished as failed."""

    def __init__(self, state: SweepState) -> None:
        self.state = state
        self.seen: dict[int, tuple[str, int]] = {}

    def report(self) -> dict:
        doc = self.state.read()
        for entry in doc["jobs"]:
            now = (entry["state"], int(entry.get("requeues") or 0))
            before = self.seen.get(entry["index"])
            if before is not None and before != now:
                extra = f" (requeued {now[1]}x)" if now[1] != before[1] else ""
                error = f": {entry['error']}" if entry["state"] == "failed" and entry.get("error") else ""
                say(f"job {entry['index']} ({_label(entry)}): {entry['state']}{extra}{error}")
            self.seen[entry["index"]] = now
        return doc

    def ended(self, index: int, job) -> None:
        """The job's process is gone: if it recorded no outcome, it failed."""
        entry = self.state.job(index)
        if entry["state"] in FINAL or entry["state"] == "preempted":
            return
        self.state.update_job(index, state="failed", ended=time.time(), error=_log_error(job))


def _log_error(job) -> str:
    """The last ``error:`` line of a job's log, else its last line, else what submitit says."""
    lines: list[str] = []
    for path in (getattr(job.paths, "stderr", None), getattr(job.paths, "stdout", None)):
        try:
            lines += Path(path).read_text(errors="replace").splitlines()
        except (OSError, TypeError):
            pass
    errors = [ln.strip() for ln in lines if ln.strip().startswith("error:")]
    if errors:
        return errors[-1]
    tail = [ln.strip() for ln in lines if ln.strip()]
    return f"error: the job's process ended without a result ({tail[-1] if tail else 'no log'})"


def _local(state: SweepState, settings: LauncherSettings, indices: list[int]) -> None:
    import submitit

    from vlmrm.sweep.job import SweepJob

    parallel = default_parallel(settings)
    gpus = cuda_devices()
    share = settings.cpus_per_job or max(1, cores() // parallel)
    executor = submitit.LocalExecutor(folder=str(state.folder.resolve() / ".submitit"))
    executor.update_parameters(
        timeout_min=settings.time_min or 7 * 24 * 60, signal_delay_s=settings.signal_delay_s,
        **({"setup": list(settings.setup)} if settings.setup else {}),
    )
    say(f"submitit_local: {len(indices)} jobs, {parallel} at once"
        + (f", one GPU each of {len(gpus)}" if gpus else f", {share} core(s) each"))
    function = SweepJob(str(state.folder.resolve()))  # the workers may start elsewhere
    watcher = _Watcher(state)
    watcher.report()
    waiting = list(indices)
    running: dict[int, tuple[object, int]] = {}  # index -> (job, slot)
    try:
        while waiting or running:
            for index, (job, _slot) in list(running.items()):
                if job.done():
                    watcher.ended(index, job)
                    del running[index]
            free = [s for s in range(parallel) if s not in {slot for _, slot in running.values()}]
            while waiting and free:
                slot, index = free.pop(0), waiting.pop(0)
                cpus = _cpu_slice(slot, share)
                if gpus:
                    executor.update_parameters(visible_gpus=[gpus[slot % len(gpus)]], gpus_per_node=1)
                with _sigint_ignored():  # the controller ignores Ctrl-C (the job takes it)
                    job = executor.submit(function, index, cpus)
                state.update_job(index, job_id=str(job.job_id))
                running[index] = (job, slot)
            watcher.report()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        # Ctrl-C reached every job of the terminal's process group: each saves a checkpoint
        # and ends preempted. Wait for them, so that the summary says where each stopped.
        say("stopping: each running job saves a checkpoint")
        for job, _ in running.values():
            _wait(job.done, STOP_WAIT_S)
        for index, (job, _) in running.items():
            if job.done():
                watcher.ended(index, job)
        watcher.report()
        raise
    watcher.report()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start a process that inherits SIGINT ignored.

    submitit's local controller would answer a terminal's Ctrl-C by killing its task a
    second later, before the task's checkpoint is saved; ignoring it there leaves the stop
    to the task (:func:`vlmrm.sweep.job.run_job` takes SIGINT back).
    """
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _cpu_slice(slot: int, share: int) -> list[int] | None:
    """The cores of slot ``slot`` (a disjoint slice of this process's cores while they last)."""
    import os

    try:
        available = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    start = (slot * share) % len(available)
    return [available[(start + k) % len(available)] for k in range(min(share, len(available)))]


def _wait(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(POLL_S)


def slurm_parameters(settings: LauncherSettings, n_jobs: int) -> dict:
    """submitit's SlurmExecutor parameters for the launcher keys."""
    params: dict = {
        "time": settings.time_min or 60,
        "signal_delay_s": settings.signal_delay_s,
        "array_parallelism": settings.parallel or n_jobs,
        "job_name": "vlmrm-sweep",
    }
    for key, name in (("partition", "partition"), ("account", "account"), ("qos", "qos"),
                      ("gpus_per_job", "gpus_per_node"), ("cpus_per_job", "cpus_per_task")):
        value = getattr(settings, key)
        if value is not None:
            params[name] = value
    if settings.mem_gb:
        params["mem"] = f"{settings.mem_gb}GB"
    if settings.setup:
        params["setup"] = list(settings.setup)
    if settings.extra:
        params["additional_parameters"] = {str(k): v for k, v in settings.extra.items()}
    return params


def _slurm(state: SweepState, settings: LauncherSettings, indices: list[int]) -> None:
    import submitit

    from vlmrm.sweep.job import SweepJob

    executor = submitit.SlurmExecutor(folder=str(state.folder.resolve() / ".submitit" / "%j"))
    executor.update_parameters(**slurm_parameters(settings, len(indices)))
    jobs = executor.map_array(SweepJob(str(state.folder.resolve())), indices, [None] * len(indices))
    for index, job in zip(indices, jobs, strict=True):
        state.update_job(index, job_id=str(job.job_id))
    say(f"submitit_slurm: {len(jobs)} jobs as array {jobs[0].job_id.split('_')[0]}; "
        f"logs in {state.folder / '.submitit'}; the jobs go on if this process stops")
    watcher = _Watcher(state)
    watcher.report()
    running = dict(zip(indices, jobs, strict=True))
    last_check = 0.0
    while running:
        doc = watcher.report()
        for index in list(running):
            if doc["jobs"][index]["state"] in FINAL:
                del running[index]
        if time.monotonic() - last_check > SLURM_POLL_S or all(
            doc["jobs"][i]["state"] in ("preempted", *FINAL) for i in running
        ):
            last_check = time.monotonic()
            for index, job in list(running.items()):
                if job.done(force_check=True):
                    watcher.ended(index, job)
                    del running[index]
        time.sleep(POLL_S)
    watcher.report()
