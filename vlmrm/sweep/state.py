"""``sweep.json``: the one record of a sweep, shared by its driver, its jobs and the study.

Each job updates its own entry while it runs (state, times, requeues, its result), the
driver the others; every update reads, changes and rewrites the file under an
``fcntl.flock`` on ``sweep.lock`` and publishes it with an atomic rename, so a reader
(the console summary, ``python -m vlmrm.study``) never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write_text

SWEEP_FILE = "sweep.json"
LOCK_FILE = "sweep.lock"
VERSION = 1
#: States a job does not leave by itself (``preempted`` leaves it when resumed or requeued).
FINAL = ("done", "failed")


def is_sweep_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / SWEEP_FILE).is_file()


class SweepState:
    """Read and update ``<folder>/sweep.json``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / SWEEP_FILE

    def read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{self.folder} is no sweep folder (no {SWEEP_FILE}); "
                              "pass the folder a -m sweep wrote, <out>/multirun/<name>") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
            raise ConfigError(f"{self.path} is damaged (no job list)")
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(doc, indent=2) + "\n")

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Read under the lock, let the caller change the document, write it back."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = self.read()
                yield doc
                self.write(doc)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update_job(self, index: int, **fields: Any) -> dict[str, Any]:
        """Set ``fields`` of job ``index``; returns the entry as written."""
        with self.update() as doc:
            entry = doc["jobs"][index]
            entry.update(fields)
            return dict(entry)

    def job(self, index: int) -> dict[str, Any]:
        return dict(self.read()["jobs"][index])


def new_entry(index: int, swept: dict[str, str], argv: list[str]) -> dict[str, Any]:
    """A job's entry before it first runs (the keys of the sweep.json contract)."""
    return {
        "index": index, "swept": swept, "argv": argv, "run_dir": f"runs/{index:03d}",
        "state": "pending", "started": None, "ended": None, "job_id": None, "requeues": 0,
        "error": None, "result": None,
    }
