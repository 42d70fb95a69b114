"""The one rich console factory: tables that fit a terminal and stay whole in a log file.

Rich sizes its output to the terminal, and to 80 columns when stdout is a pipe or a
file, so a results table written to ``run.log`` wraps its rows into unreadable pieces.
:func:`make_console` keeps rich's behaviour on a terminal and gives files and pipes a
width no table reaches (``COLUMNS`` still wins when set).

:func:`warnings_as_lines` is how a command shows the toolkit's own warnings: one
``warning: ...`` line each, like its ``error: ...`` lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

#: Width for output that is not a terminal: wide enough that no table row is wrapped.
LOG_WIDTH = 400


def make_console(stderr: bool = False, **kwargs: Any):
    """A ``rich.console.Console`` for stdout (or stderr) that never wraps tables in log files."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if "width" not in kwargs and not os.environ.get("COLUMNS") and not _isatty(stream):
        kwargs["width"] = LOG_WIDTH
    return Console(stderr=stderr, **kwargs)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """While a command runs, a :class:`~vlmrm.errors.VLMRMWarning` prints as one
    ``warning: <message>`` line on stderr, not as Python's two lines (a source location
    inside the toolkit and a line of its code); other warnings keep Python's format.

    Under torchrun only rank 0 prints them: every rank loads the same model and prompts, so
    the others would repeat its lines (what one rank alone meets, such as a damaged video,
    a command gathers to rank 0 itself)."""
    from vlmrm.errors import VLMRMWarning

    previous = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:  # fmt: skip
        if not issubclass(category, VLMRMWarning):
            previous(message, category, filename, lineno, file, line)
            return
        if os.environ.get("RANK", "0") != "0":
            return
        stream = sys.stderr if file is None else file
        try:
            print(f"warning: {message}", file=stream, flush=True)
        except OSError:  # stderr closed: nothing to show it on
            pass

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
