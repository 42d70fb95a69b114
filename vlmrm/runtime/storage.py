"""Full disks, read-only disks, quotas and permissions: one line naming the folder and what was kept.

A write can fail with ``ENOSPC``, ``EDQUOT``, ``EROFS`` or ``EACCES`` anywhere in a
command (SB3's zip writer, the replay buffer, TensorBoard's writer thread, a video, a CSV,
a label sheet). Catching that in every writer would scatter the same message over dozens
of places; instead the writers only note where they were writing (:func:`note_path`, done
by :func:`vlmrm.runtime.atomic.atomic_write` and the checkpoint units), the run lock notes
the run folder and what the run kept (:class:`vlmrm.runtime.lock.RunLock`), and the
argument layer turns the exception into one ``error:`` line with :func:`storage_error_line`
(exit 2, no traceback). A checkpoint unit removes its half-written ``.partial`` folder on
the way out, so the space comes back.

Errors that other libraries wrap (torch's ``file write failed``) are recognised by the
system's message text in the exception or its causes; a write that fails without saying
why (ffmpeg's broken pipe) counts as a full disk when the disk it wrote to is full.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from vlmrm.errors import VLMRMError

#: errno → (what happened, what the user does about it).
PROBLEMS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space within your quota"),
    errno.EROFS: ("the file system is read-only", "make it writable (or copy the folder to a writable disk)"),
    errno.EACCES: ("permission denied", "make the folder writable for you"),
}
_TEXTS = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
}
_PATH_ATTR = "_vlmrm_write_path"
_ERRNO_ATTR = "_vlmrm_errno"
#: Free bytes under which a write that failed without saying why is taken for a full disk.
NEARLY_FULL = 1 << 20
_RUN_ATTR = "_vlmrm_run"


class StorageError(VLMRMError):
    """A storage problem that reached the top wrapped in something other than ``OSError``."""


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def storage_errno(exc: BaseException, folder: str | os.PathLike | None = None) -> int | None:
    """The storage errno behind ``exc`` (itself, a cause, or the system's message in it), else None.

    With ``folder`` (where the failed write went), a failed write whose error says nothing
    (ffmpeg's broken pipe when the disk under a video fills) counts as a full disk when that
    disk has (almost) no space left; the finding is remembered on the exception.
    """
    for link in _chain(exc):
        code = getattr(link, _ERRNO_ATTR, None)
        if code is not None:
            return code
        if isinstance(link, OSError) and link.errno in PROBLEMS:
            return link.errno
    for link in _chain(exc):
        text = str(link).lower()
        for needle, code in _TEXTS.items():
            if needle in text:
                return code
    if folder is not None and isinstance(exc, (OSError, RuntimeError)) and _nearly_full(folder):
        _attach(exc, _ERRNO_ATTR, errno.ENOSPC)
        return errno.ENOSPC
    return None


def _nearly_full(folder: str | os.PathLike) -> bool:
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < NEARLY_FULL
    except OSError:
        return False


def _attach(exc: BaseException, attr: str, value: object) -> None:
    for link in _chain(exc):
        if getattr(link, attr, None) is None:
            try:
                setattr(link, attr, value)
            except (AttributeError, TypeError):  # pragma: no cover - immutable exception types
                pass


def note_path(exc: BaseException, path: str | os.PathLike) -> None:
    """Remember the file ``exc`` interrupted the write of (the innermost writer's note wins)."""
    if storage_errno(exc, Path(path).parent) is not None:
        _attach(exc, _PATH_ATTR, Path(path))


def annotate(exc: BaseException, folder: str | os.PathLike, kept: Callable[[], str] | str | None) -> None:
    """Remember the run folder and what it kept, computed now (while the run's lock is held)."""
    if storage_errno(exc, folder) is None:
        return
    text = kept() if callable(kept) else kept
    _attach(exc, _RUN_ATTR, (Path(folder), text))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def free_space(folder: str | os.PathLike) -> str | None:
    """``"12.3 MB free of 8.0 GB"`` for the disk of ``folder`` (its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return f"{_size(usage.free)} free of {_size(usage.total)}"


def storage_error_line(exc: BaseException, out: str | os.PathLike | None = None) -> str | None:
    """The one line for a storage error (without ``error:``), or None if ``exc`` is another problem.

    Names the folder being written (the run folder when a run lock was held, else the
    written file's folder, else ``out``: the command's output setting), the file, the free
    space for a full disk or quota, what was kept and how to go on.
    """
    code = storage_errno(exc)
    if code is None:
        return None
    run = written = filename = None
    kept = None
    for link in _chain(exc):
        run = run or getattr(link, _RUN_ATTR, None)
        written = written or getattr(link, _PATH_ATTR, None)
        if isinstance(link, OSError) and link.errno == code and filename is None:
            filename = link.filename
    target = written or (Path(os.fsdecode(filename)) if filename else None)
    if run is not None:
        folder, kept = run
    else:
        from vlmrm.runtime.lock import held_lock

        lock = held_lock()
        folder = lock.folder if lock is not None else (
            target.parent if target is not None else (Path(out) if out else None))
        kept = lock.what_was_kept() if lock is not None else None
        if lock is None and target is not None and target.name.endswith(".lock"):
            kept = "nothing was written"  # refused while taking the run's lock, before any write
    what, fix = PROBLEMS[code]
    where = f"{folder}" if folder is not None else "the output folder"
    detail = []
    if target is not None:
        try:
            detail.append(f"writing {target.relative_to(folder) if folder is not None else target}")
        except ValueError:
            detail.append(f"writing {target}")
    if code in (errno.ENOSPC, errno.EDQUOT) and folder is not None:
        space = free_space(folder)
        if space:
            detail.append(space)
    head = f"{where}: {what}" + (f" ({'; '.join(detail)})" if detail else "")
    kept = kept or "files written before are intact"
    how = "and run the same command again"
    if "resume with:" in kept:  # "...; resume with: <command>" → "<fix> and resume with: <command>"
        kept, _, command = kept.partition("; resume with:")
        how = f"and resume with:{command}"
    return f"{head}; {kept}; {fix} {how}"
