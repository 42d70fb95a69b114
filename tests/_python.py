"""Run a snippet of Python in a fresh interpreter, as a user's shell would.

Why: what a module imports (torch, pygame) and what a command prints at start-up can only be
seen from a process that has imported nothing yet; the test process has imported everything.
"""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -c code`` with this interpreter, stdout and stderr captured as text; the
    snippet must exit 0 (its stderr is the failure message)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done
