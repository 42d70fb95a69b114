"""The one rich console factory: tables that fit a terminal and stay whole in a log file.

Rich sizes its output to the terminal, and to 80 columns when stdout is a pipe or a
file, so a results table written to ``run.log`` wraps its rows into unreadable pieces.
:func:`make_console` keeps rich's behaviour on a terminal and gives files and pipes a
width no table reaches (``COLUMNS`` still wins when set).
"""

from __future__ import annotations

import os
import sys
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
