"""Stop a long job cleanly on Ctrl-C (SIGINT), SIGTERM, SIGUSR1 or SIGUSR2: the one graceful-stop handler.

A signal must not interrupt a job in the middle of writing a transition or a checkpoint.
:class:`GracefulStop` only records it; the job polls :attr:`GracefulStop.requested` at a
safe point (SB3 training through :class:`vlmrm.agents.callbacks.StopOnSignal`, tuning
after each optimiser step), saves a checkpoint and returns. A second signal aborts at
once (``KeyboardInterrupt``) for when saving hangs.

Cluster schedulers send SIGTERM before killing a preempted job, and SLURM sends SIGUSR1 or
SIGUSR2 (``sbatch --signal``) before a pre-emption or a time limit, so the same path makes
pre-emption resumable with ``resume=<run dir>``; under a sweep's submitit launcher the job
is then requeued (:mod:`vlmrm.sweep.job`).

Under torchrun a Ctrl-C reaches each worker twice: from the terminal (it signals the whole
process group) and, a moment later, passed on by the launcher. A repeat of the signal
within :data:`ECHO_S` seconds of the first is taken for that echo, not for a second Ctrl-C,
so that a worker still saves its checkpoint (torchrun waits 30 s before killing it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

#: Under torchrun: a repeated signal this soon after the first is the launcher passing it on.
ECHO_S = 2.0


def _launcher_echoes() -> bool:
    """Whether this process is a torchrun worker (its launcher passes signals on)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


class GracefulStop:
    """Context manager: while active, SIGINT/SIGTERM/SIGUSR1/SIGUSR2 set :attr:`signum` instead of killing.

    Example:
        >>> with GracefulStop() as stop:
        ...     while not stop.requested:
        ...         break
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
    #: The last signal any instance took (a sweep's job reads it after a command returned).
    last: int | None = None

    def __init__(self, echo_s: float | None = None) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._first = 0.0
        #: A repeat within this many seconds is ignored (default: ECHO_S under torchrun, else 0).
        self.echo_s = (ECHO_S if _launcher_echoes() else 0.0) if echo_s is None else float(echo_s)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __bool__(self) -> bool:
        return self.requested

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a stop as if ``signum`` had arrived (tests, programmatic stops)."""
        self.signum = signum

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            if time.monotonic() - self._first < self.echo_s:
                return  # the launcher passing the same Ctrl-C on
            self._restore()
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: aborting without a checkpoint")
        self.signum = signum
        GracefulStop.last = signum
        self._first = time.monotonic()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self._restore()
