"""Helpers of the torchrun tests: launch a job in its own process group, wait on what it prints
(within a bound, saying what was waited for), list its processes, Ctrl-C it.

Imported as ``from _torchrun import ...``: pytest puts ``tests/`` on ``sys.path`` (no
``__init__.py`` there, the default ``prepend`` import mode), whether it is run as
``pytest`` or ``python -m pytest``.

Rendezvous: ``torchrun --standalone`` hosts its store on a port the OS assigns when the store
binds it (``localhost:0``), and the workers join that same store (torch's shared agent
store), so no port is picked by a test, none twice, and two jobs at once cannot collide.
:func:`torchrun` checks that nothing in the environment turns the shared store off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

#: For the tests that look for left-over processes in ``/proc``.
needs_proc = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list processes")

#: Jobs started by the running test; ``conftest.py`` kills those still alive after it.
STARTED: list[Job] = []

TAIL_CHARS = 4000


class Job(subprocess.Popen):
    """A torchrun job whose output (stdout and stderr together) a thread collects as it comes.

    A ``subprocess.Popen``: ``communicate(timeout=...)`` returns the whole output once the job
    has ended, as usual. Meanwhile :meth:`output` is what it printed so far, and
    :meth:`wait_for` waits on a condition within a bound.
    """

    def __init__(self, cmd: list[str], *, text: bool, **kwargs) -> None:
        super().__init__(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
        self._text = text
        self._out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"torchrun-{self.pid}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        fd = self.stdout.fileno()
        while chunk := os.read(fd, 65536):
            with self._lock:
                self._out.extend(chunk)
        self.stdout.close()

    def output(self) -> str:
        """Everything the job printed so far."""
        with self._lock:
            return self._out.decode(errors="replace")

    def tail(self) -> str:
        out = self.output()
        return out if len(out) <= TAIL_CHARS else "..." + out[-TAIL_CHARS:]

    def communicate(self, input=None, timeout: float | None = None):  # noqa: A002 - Popen's name
        """Wait for the job to end and its output to close (both within ``timeout``); ``(output, None)``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.wait(timeout)
        self._reader.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        if self._reader.is_alive():  # a process the job left behind holds its output open
            raise subprocess.TimeoutExpired(self.args, timeout, output=self.output())
        with self._lock:
            out = bytes(self._out)
        return (out.decode(errors="replace") if self._text else out), None

    def finish(self, timeout: float) -> str:
        """The job's whole output once it has ended; killed, and the test failed, after ``timeout`` s."""
        try:
            self.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            pytest.fail(f"the torchrun job did not end within {timeout:g} s; its output ends with:\n{self.tail()}")
        return self.output()

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float, poll_s: float = 0.1) -> None:
        """Return once ``condition()`` holds; fail, naming ``what`` and showing the job's output, if
        the job ends first or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.poll() is not None:
                self._reader.join(5)
                if condition():
                    return
                pytest.fail(f"the torchrun job ended (exit status {self.returncode}) before {what}; "
                            f"its output ends with:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"waited {timeout:g} s for {what}; the job's output ends with:\n{self.tail()}")
            time.sleep(poll_s)

    def printed(self, text: str, timeout: float) -> None:
        """Wait until the job has printed ``text``."""
        self.wait_for(lambda: text in self.output(), f"the job to print {text!r}", timeout)

    def kill_group(self) -> None:
        """SIGKILL to torchrun's process group and to each worker's.

        torchrun starts every worker in a session of its own, so killing the launcher's group
        alone would orphan the workers (left blocked on their peers, they would run on into
        the tests that follow): their ids are taken before the launcher dies.
        """
        for group in [self.pid, *descendants(self.pid)]:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.wait()


def torchrun(*args: str, cwd: Path | None = None, text: bool = False, nproc: int = 2) -> Job:
    """``python -m torch.distributed.run --standalone --nproc-per-node=N ARGS``, started in the background.

    One thread per worker; stdout and stderr together in the job's output; in its own
    session (its own process group, as in a terminal), so that :func:`ctrl_c` reaches
    torchrun and every worker.
    """
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # (with the shared store turned off, torch would pick the workers' port by binding and
    # closing a socket, and another process could take it before the workers bind it again)
    env.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", None)
    job = Job(cmd, text=text, cwd=cwd, env=env, start_new_session=True)
    STARTED.append(job)
    return job


def kill_started() -> None:
    """Kill the jobs of the test that just ended that are still running (a test that failed midway)."""
    while STARTED:
        job = STARTED.pop()
        if job.poll() is None:
            job.kill_group()


def ctrl_c(proc: subprocess.Popen) -> None:
    """SIGINT to the job's whole process group: what Ctrl-C in a terminal does."""
    os.killpg(proc.pid, signal.SIGINT)


def alive(marker: str) -> list[int]:
    """Ids of the processes whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                pids.append(int(entry.name))
    return pids


def descendants(pid: int) -> list[int]:
    """Ids of the living processes descended from ``pid`` (children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: ppid
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def left_behind(marker: str, tries: int = 50) -> list[int]:
    """Wait (``tries`` × 0.2 s at most) for the processes with ``marker`` to end; those still alive."""
    for _ in range(tries):
        if not alive(marker):
            break
        time.sleep(0.2)
    return alive(marker)
