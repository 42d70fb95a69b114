"""One writer per run folder: an OS lock on ``<folder>/.lock``, held for the run's life.

Two processes writing one run folder (two trainings started together with the same
``run_name=``, a second ``resume=`` of a running job) interleave their checkpoints and
logs and crash each other's saves. Every command that writes a resumable folder (train,
tune, tune.finetune, tta, caption.train, label sheets) therefore takes :class:`RunLock`
before it writes anything there. The lock is ``flock(LOCK_EX | LOCK_NB)`` on a lock file:

* it is refused at once, never waited for: a second writer ends with one line naming the
  holder (PID, host, start time and command, recorded in the lock file by the holder);
* the OS releases it when the holder dies, however it dies, so a ``kill -9`` never leaves a
  stale lock behind (its file stays, unlocked; a run that ends removes it);
* taking it first and checking the folder afterwards makes "does this folder already hold
  a run?" race-free.

Forked children (data loader workers, the closing-line waiter) close their copy of the lock
file, so a finished run's lock is released when the run's process exits, not when its last
child does. On a filesystem without ``flock`` support the lock warns once and the run goes
on unlocked. A storage error (full disk, read-only, quota, permission) raised while the lock
is held is annotated with the folder and what was kept (:mod:`vlmrm.runtime.storage`), and
a writer thread's storage error (TensorBoard's) is left to the run's own thread to report.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from vlmrm.errors import ConfigError, VLMRMError

#: The lock file's name inside a run folder.
LOCK_NAME = ".lock"
#: ``flock`` failures that mean "this filesystem cannot lock", not "someone holds it".
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_OPEN_FDS: set[int] = set()
_HELD: list[RunLock] = []
_warned = False
T = TypeVar("T")
R = TypeVar("R")


class RunInUse(ConfigError):
    """The run folder is being written by another process."""


def _close_in_child() -> None:
    for fd in list(_OPEN_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _OPEN_FDS.clear()
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """While a run is held, a writer thread's storage error is not printed with a traceback.

    TensorBoard writes its event file from a thread; on a full disk that thread dies with a
    traceback, and the writer re-raises the same error in the run's own thread at its next
    write, which ends the run with the one line (:mod:`vlmrm.runtime.storage`).
    """
    from vlmrm.runtime.storage import storage_errno

    if _HELD and args.exc_value is not None and storage_errno(args.exc_value) is not None:
        return
    _PREVIOUS_HOOK[0](args)


_PREVIOUS_HOOK: list = []


def _install_thread_hook() -> None:
    if threading.excepthook is not _thread_excepthook:  # (again, if someone replaced it since)
        _PREVIOUS_HOOK[:] = [threading.excepthook]
        threading.excepthook = _thread_excepthook


def command_line() -> str:
    """How this process was started, as a user would type it (``python -m vlmrm.train ...``)."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    if argv:
        argv[0] = "python" if "python" in Path(argv[0]).name else Path(argv[0]).name
    return shlex.join(argv)


def _describe(info: dict) -> str:
    if not info.get("pid"):
        return "another process"
    since = info.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    if isinstance(since, (int, float)) and time.time() - since > 86400:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    command = str(info.get("command") or "").strip()
    if len(command) > 120:
        command = command[:117] + "..."
    return (f"PID {info.get('pid', '?')} on {info.get('host', '?')} since {when}"
            + (f" ({command})" if command else ""))


class RunLock:
    """``with RunLock(folder):`` — be the only writer of ``folder`` until the block ends.

    Args:
        folder: the run folder (created if missing: the lock file is its first entry).
        command: what the holder runs, shown to a refused second writer (default: this
            process's command line).
        kept: called when a storage error ends the run: what was kept and how to resume,
            e.g. ``"the checkpoint of step 200 is intact; resume with: python -m ..."``
            (default: files written before are intact; run the same command again).
        lock_file: the lock file (default ``<folder>/.lock``); a folder that is replaced
            whole when published (label sheets) is locked through a file beside it.

    Raises :class:`RunInUse` (one line naming the holder) if another process holds it. The
    held lock survives nothing: a dead holder's lock is free again.
    """

    def __init__(self, folder: str | os.PathLike, command: str | None = None,
                 kept: Callable[[], str] | None = None, lock_file: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder)
        self.path = Path(lock_file) if lock_file is not None else self.folder / LOCK_NAME
        self.command = command if command is not None else command_line()
        self.kept = kept
        self._fd: int | None = None
        self.locked = False

    # -- taking and releasing ------------------------------------------------------------

    def acquire(self) -> RunLock:
        """Take the lock (see the class docstring); returns ``self``."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform
            fcntl = None  # type: ignore[assignment]
        for _ in range(100):  # a holder removing the file as we open it: open it again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            if fcntl is None:  # pragma: no cover - no flock on this platform
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self._cannot_lock(fd, exc)  # refused (RunInUse), or a filesystem without locks
                break
            if _same_file(fd, self.path):
                self.locked = True
                break
            os.close(fd)  # we locked a file its last holder had just removed
        else:  # pragma: no cover - 100 holders in a row, each gone as we came
            raise RunInUse(f"{self.folder} is taken and released by other processes in turn; stop them")
        self._fd = fd
        _install_thread_hook()
        _OPEN_FDS.add(fd)
        _HELD.append(self)
        if self.locked:
            self._record()
        return self

    def _cannot_lock(self, fd: int, exc: OSError) -> None:
        """``flock`` failed: another holder (refuse), or no lock support (warn once, go on)."""
        global _warned
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            holder = _read_holder(fd)
            os.close(fd)
            raise RunInUse(f"{self.folder} is in use by {_describe(holder)}; wait for it or stop it") from None
        if exc.errno not in _UNSUPPORTED:
            os.close(fd)
            raise exc
        if not _warned:
            _warned = True
            print(f"warning: the filesystem of {self.folder} cannot lock files ({exc.strerror}); "
                  "make sure no other process writes this run folder", file=sys.stderr, flush=True)

    def _record(self) -> None:
        """Write who holds the lock into the lock file (read by a refused second writer)."""
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": self.command}
        data = (json.dumps(info) + "\n").encode("utf-8")
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError:
            pass  # the lock holds without the note (a full disk: the run reports it on its own write)

    def release(self) -> None:
        """Let the folder go, removing the lock file (a killed holder's file stays, unlocked)."""
        if self._fd is None:
            return
        if self in _HELD:
            _HELD.remove(self)
        _OPEN_FDS.discard(self._fd)
        try:
            if self.locked and _same_file(self._fd, self.path):
                # Removed while still locked: whoever opened it meanwhile finds it gone
                # after locking it (acquire checks) and opens the path again.
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        try:
            os.close(self._fd)
        finally:
            self._fd = None
            self.locked = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        line = None
        try:
            if exc is not None:
                from vlmrm.runtime.storage import annotate, storage_error_line

                annotate(exc, self.folder, self.what_was_kept)
                if not isinstance(exc, (OSError, VLMRMError)):  # wrapped by a library (torch, ffmpeg)
                    line = storage_error_line(exc)
        finally:
            self.release()
        if line is not None:
            from vlmrm.runtime.storage import StorageError

            raise StorageError(line) from None

    # -- what a storage error keeps ---------------------------------------------------------

    def what_was_kept(self) -> str:
        """The ``kept`` text of this run (a generic one without a ``kept`` callable)."""
        if self.kept is not None:
            try:
                return self.kept()
            except Exception:  # noqa: BLE001 - a message must never fail
                pass
        return "files written before are intact"


def writing_rank() -> bool:
    """Whether this process writes the run folder: rank 0 under torchrun, or a plain process."""
    try:
        return int(os.environ.get("RANK", "0") or 0) == 0
    except ValueError:
        return True


def check_free(folder: str | os.PathLike) -> None:
    """Refuse at once if another process holds ``folder``'s lock (take it and let it go).

    For a command that loads for a while before it writes (training imports torch and
    builds its model first): a second writer hears the refusal in a second, not after the
    load. The real lock is still taken before the first write, so a writer that comes in
    between is refused then.
    """
    if not (writing_rank() and Path(folder).is_dir()):
        return
    try:
        with RunLock(folder):
            pass
    except OSError as exc:  # a read-only or full disk: the one storage line, before the load
        from vlmrm.errors import ConfigError
        from vlmrm.runtime.storage import storage_error_line

        line = storage_error_line(exc)
        if line is None:
            raise
        raise ConfigError(line) from None


def one_writer(body: Callable[[T], R], folder: Callable[[T], str | os.PathLike],
               beside: bool = False) -> Callable[[T], R]:
    """``body`` run under :class:`RunLock` of ``folder(settings)`` (on the writing rank only).

    For a command's entry point: ``main = entry_point(COMMAND, one_writer(body, lambda s: s.out))``.
    ``beside=True`` locks ``.<name>.lock`` next to the folder instead of inside it, for a
    folder that is published whole by a rename (label sheets).
    """

    def locked(settings: T) -> R:
        if not writing_rank():
            return body(settings)
        path = Path(folder(settings)).expanduser()
        lock_file = path.with_name(f".{path.name}.lock") if beside else None
        with RunLock(path, lock_file=lock_file):
            return body(settings)

    locked.__doc__ = body.__doc__
    locked.__name__ = getattr(body, "__name__", "body")
    return locked


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def held_lock() -> RunLock | None:
    """The innermost run lock this process holds (the folder it is writing), if any."""
    return _HELD[-1] if _HELD else None


def _read_holder(fd: int) -> dict:
    """The holder's note; it writes it right after locking, so wait a moment for it (≤ 0.5 s)."""
    deadline = time.monotonic() + 0.5
    while True:
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            info = json.loads(text)
            if isinstance(info, dict):
                return info
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.01)
