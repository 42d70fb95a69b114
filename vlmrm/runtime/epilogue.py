"""The job's closing line: printed once, and last on screen even under torchrun.

When Ctrl-C stops a torchrun job, every rank stops cleanly, but the launcher itself
(``torchrun``, not our code) then prints a ``SignalException`` traceback, after our
ranks have exited. What the user needs to read last is what was saved and how to
resume. :func:`last_word` prints that line on rank 0 only; under torchrun it hands the
line to a tiny forked waiter that prints it once the launcher has exited (at most
:data:`WAIT_S` seconds later), so the launcher's traceback cannot bury it. The waiter
ignores a second Ctrl-C and only sleeps, reads ``/proc`` and writes one line.
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: The longest the waiter waits for the launcher (torchrun gives its workers 30 s to stop).
WAIT_S = 60.0


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def under_torchrun() -> bool:
    """Whether this process is a worker started by torchrun (its launcher is the parent)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and os.getppid() > 1


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited, not yet reaped process counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _defer(message: str, launcher: int) -> bool:
    """Fork a waiter that prints ``message`` after ``launcher`` exits; False if it cannot."""
    if not hasattr(os, "fork"):
        return False
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid:
        return True
    try:  # the waiter: never returns into the caller's code
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        deadline = time.monotonic() + WAIT_S
        while _alive(launcher) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.write(2, (message.rstrip("\n") + "\n").encode("utf-8", "replace"))
    finally:
        os._exit(0)


def last_word(message: str) -> None:
    """Print the job's closing ``message`` once (rank 0), after torchrun's own output if any."""
    if _rank() != 0:
        return
    if not (under_torchrun() and _defer(message, os.getppid())):
        print(message, file=sys.stderr, flush=True)
