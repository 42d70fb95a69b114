"""The CPU thread policy of every entry point: ``threads=auto`` or ``threads=N``.

Why one policy: an OpenMP (or OpenVINO) parallel region waits for its slowest thread, so a
thread that shares its core with a busy process (an env worker, another rank, another
user's job) slows every call down. torch's default, one thread per core, loses most of its
speed as soon as anything else runs: measured on 2 shared cores, CartPole DQN with
``vlmrm-tiny`` and 2 env worker processes ran 16 env steps/s at 2 threads and 224 at 1;
ViT-B-32 int8 rewards with one core busy ran at 0.67× of fp32 with 2 threads and 1.5× with 1.

``auto`` is half the cores this process may run on (its affinity mask), less the worker
processes stepping beside it beyond the other half, divided among the ranks of a
``torchrun`` job on this host, at least 1 and at most :data:`MAX_AUTO_THREADS`. An integer
overrides it. Commands apply it once for the process (:func:`apply_threads`, printed in
their setup line); :func:`vlmrm.load_clip` applies it around the model's own tower calls,
so a Python user gets the same policy without a global side effect.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from vlmrm.errors import ConfigError

#: The most threads ``auto`` gives: reward batches of a few dozen frames and small MLP
#: updates do not scale further, and each extra thread is one more to wait for.
MAX_AUTO_THREADS = 4

#: The thread count a command applied for its whole process (``None``: none applied); the
#: default of :func:`vlmrm.load_clip` follows it, so a command's model uses the same count.
_process_threads: int | None = None
#: The line a command prints once with its setup (when it loads its model), if not yet printed.
_pending_line: str | None = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: containers and ``taskset``
    grant fewer than ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def local_ranks() -> int:
    """Processes of a ``torchrun`` job on this host (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_threads(value: Any) -> str | int:
    """``auto`` (or ``None``) → ``"auto"``; a positive integer (or its text) → that integer."""
    if value is None or value == "auto":
        return "auto"
    if isinstance(value, bool):
        raise ConfigError(f"threads must be 'auto' or a positive integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"threads must be 'auto' or a positive integer, got {value!r}") from None
    if number < 1 or (isinstance(value, float) and value != number):
        raise ConfigError(f"threads must be 'auto' or a positive integer, got {value!r}")
    return number


def resolve_threads(value: Any = "auto", workers: int = 0, cores: int | None = None) -> int:
    """The thread count of ``threads=value`` (see the module docstring).

    ``workers``: processes stepping beside this one on the same cores (env workers, 0 for
    in-process envs); ``cores``: override the available cores (tests).
    """
    value = check_threads(value)
    if value != "auto":
        return int(value)
    cores = available_cores() if cores is None else cores
    cores = max(1, cores // local_ranks())
    return max(1, min(MAX_AUTO_THREADS, cores // 2, cores - max(0, int(workers))))


def describe_threads(value: Any = "auto", workers: int = 0, what: str = "worker processes") -> str:
    """``torch threads: N (why)``: the line a command prints once with its setup."""
    value = check_threads(value)
    if value == "auto":
        ranks = local_ranks()
        shared = f", {ranks} ranks" if ranks > 1 else ""
        why = f"auto: {available_cores()} cores{shared}, {workers} {what}; threads=N overrides"
    else:
        why = f"threads={value}"
    return f"torch threads: {resolve_threads(value, workers)} ({why})"


def apply_threads(value: Any = "auto", workers: int = 0, announce: bool = False) -> int:
    """Set torch's CPU threads for the whole process to the policy's count; returns it.

    :func:`vlmrm.load_clip` without ``threads=`` then uses the same count. ``announce``:
    the first :func:`announce_threads` (the first model load) prints the policy's line.
    """
    global _process_threads, _pending_line
    count = resolve_threads(value, workers)  # a bad value fails before torch is imported
    import torch

    torch.set_num_threads(count)
    _process_threads = count
    _pending_line = describe_threads(value, workers) if announce else None
    return count


def announce_threads() -> None:
    """Print the line :func:`apply_threads` left to print (once; a no-op after that)."""
    global _pending_line
    if _pending_line is not None:
        import sys

        print(_pending_line, file=sys.stderr, flush=True)
        _pending_line = None


def discard_thread_line() -> None:
    """Forget a line not printed yet: a command that ended before loading its model (an
    error, a stop) must not leave its line to the next command run in the same process."""
    global _pending_line
    _pending_line = None


def process_threads() -> int | None:
    """The count :func:`apply_threads` set for this process, or ``None``."""
    return _process_threads


@contextlib.contextmanager
def using_threads(count: int | None) -> Iterator[None]:
    """torch runs with ``count`` threads inside the block, then with what it had before."""
    import torch

    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
