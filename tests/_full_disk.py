"""A full disk for the tests: a real small ``tmpfs`` where the test may mount one, else ``ENOSPC``
injected into every write under one folder.

Imported as ``from _full_disk import ...`` (pytest puts ``tests/`` on ``sys.path``).

:func:`full_disk` yields a :class:`Disk`: ``disk.fill()`` makes it full (a filler file on
the tmpfs; the injection switched on), ``disk.free()`` gives the space back, and
``disk.method`` says which one the test used (it is also printed: ``pytest -rP``). The
injection wraps ``open`` (``builtins.open``, ``io.open``, so ``pathlib``, pandas, pickle,
PIL, zipfile and TensorBoard's writer all go through it): a file opened for writing under
the folder while the switch file exists is created, but its writes go to ``/dev/full``,
where the kernel fails every write with ``ENOSPC``. A
child process gets it with :data:`INJECT` run before the command (``python -c INJECT
FOLDER -m module ARGS``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: Runs ``python -c INJECT FOLDER -m MODULE ARGS...``: MODULE's main with ENOSPC injected under FOLDER.
INJECT = """
import sys, runpy
sys.path.insert(0, {tests!r})
from _full_disk import inject
inject(sys.argv[1])
module = sys.argv[3]
sys.argv = [module, *sys.argv[4:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""
SWITCH = ".disk-full"


def _writes(mode: str) -> bool:
    return any(c in mode for c in "wax+")


class _Full:
    """A file object whose writes fail as on a full disk (everything else is the real file's)."""

    def __init__(self, fh, name: str) -> None:
        self._fh, self._name = fh, name

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def writelines(self, lines):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)


def inject(folder: str | os.PathLike) -> None:
    """From now on, in this process: writes under ``folder`` fail with ENOSPC while ``folder/.disk-full`` exists."""
    import builtins
    import io

    root = os.path.abspath(folder)
    real_open = io.open

    def patched(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and _writes(mode):
            path = os.path.abspath(os.fsdecode(file))
            if path.startswith(root + os.sep) and os.path.exists(os.path.join(root, SWITCH)):
                if not os.path.exists("/dev/full"):  # pragma: no cover - not Linux
                    return _Full(fh, path)
                # The file is created as on a real disk; its writes go to /dev/full, where
                # the kernel answers every write with ENOSPC (a file object of the real type,
                # which writers such as SB3's zip check for).
                fh.close()
                return real_open("/dev/full", mode.replace("x", "w").replace("a", "w"), *args, **kwargs)
        return fh

    builtins.open = io.open = patched


def _mount(*args: str) -> str | None:
    """Run ``mount ARGS``; the reason it failed, or None."""
    if os.name != "posix" or shutil.which("mount") is None:
        return "no mount command"
    if os.geteuid() != 0:
        return "mounting needs root"
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


class Disk:
    """A folder whose disk a test fills and frees (see the module docstring)."""

    def __init__(self, path: Path, method: str) -> None:
        self.path, self.method = path, method
        self._filler = path / "filler"

    @property
    def tmpfs(self) -> bool:
        return self.method.startswith("tmpfs")

    def fill(self) -> None:
        if not self.tmpfs:
            (self.path / SWITCH).touch()
            return
        block = b"\0" * 65536
        with open(self._filler, "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        with contextlib.suppress(OSError), open(self._filler, "ab", buffering=0) as fh:
            while True:  # and the last few bytes
                fh.write(b"\0")
        assert shutil.disk_usage(self.path).free == 0

    def free(self) -> None:
        (self.path / SWITCH).unlink(missing_ok=True)
        self._filler.unlink(missing_ok=True)

    def extra(self) -> list[str]:
        """What besides the run's files the test left in the folder."""
        return [n for n in (SWITCH, "filler") if (self.path / n).exists()]


@contextlib.contextmanager
def full_disk(path: Path, size_kb: int, monkeypatch: pytest.MonkeyPatch | None = None):
    """A ``size_kb`` tmpfs at ``path``, else a plain folder with ENOSPC injected (in this process too)."""
    path.mkdir(parents=True, exist_ok=True)
    problem = None if os.environ.get("VLMRM_TEST_INJECT_DISK_FAULTS") else _mount(
        "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path))
    if problem is None and not os.environ.get("VLMRM_TEST_INJECT_DISK_FAULTS"):
        disk = Disk(path, f"tmpfs of {size_kb} kB")
    else:
        import builtins
        import io

        if monkeypatch is not None:  # undone after the test
            monkeypatch.setattr(builtins, "open", builtins.open)
            monkeypatch.setattr(io, "open", io.open)
        inject(path)
        disk = Disk(path, f"injected ENOSPC ({problem or 'VLMRM_TEST_INJECT_DISK_FAULTS is set'})")
    try:
        yield disk
    finally:
        print(f"full disk: {disk.method} at {path}")  # last, after the test's own reads of its output
        if disk.tmpfs:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
