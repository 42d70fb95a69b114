"""Helpers of the torchrun tests: launch a job in its own process group, list its processes, Ctrl-C it.

Imported as ``from _torchrun import ...``: pytest puts ``tests/`` on ``sys.path`` (no
``__init__.py`` there, the default ``prepend`` import mode), whether it is run as
``pytest`` or ``python -m pytest``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: For the tests that look for left-over processes in ``/proc``.
needs_proc = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list processes")


def torchrun(
    *args: str, cwd: Path | None = None, text: bool = False, nproc: int = 2
) -> subprocess.Popen:
    """``python -m torch.distributed.run --standalone --nproc-per-node=N ARGS``, started in the background.

    One thread per worker; stdout and stderr together in ``proc.stdout``; in its own
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
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=text,
    )


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


def left_behind(marker: str, tries: int = 50) -> list[int]:
    """Wait (``tries`` × 0.2 s at most) for the processes with ``marker`` to end; those still alive."""
    for _ in range(tries):
        if not alive(marker):
            break
        time.sleep(0.2)
    return alive(marker)
