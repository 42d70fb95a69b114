"""The results store of a TTA run: ``results.jsonl``, per-rank files, merging and resuming.

* One JSON record per finished sample, appended (and flushed) as soon as it is done, so an
  interruption loses at most the sample in flight. Under torchrun each rank appends to
  ``results.rank<r>.jsonl``; rank 0 merges them.
* ``config.json`` holds the settings that change per-sample results; resuming with other
  values is refused.
* At the end ``results.jsonl`` is rewritten (atomically) in run order, followed by records
  of earlier runs outside this run's selection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write_lines, atomic_write_text
from vlmrm.tta.jobs.coord import coord_group

RESULTS = "results.jsonl"
PARTS = "results.rank*.jsonl"  # per-rank results under torchrun, merged by rank 0
CONFIG = "config.json"


def abspath(path: str | os.PathLike | None) -> str | None:
    """An absolute, user-expanded path (``None`` stays ``None``): how a run records its data."""
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _damaged(path: Path, n: int, why: str) -> ConfigError:
    return ConfigError(
        f"{os.fspath(path)}:{n}: {why}; this is not a results file of vlmrm.tta (or it was "
        "damaged): move it away, or run with resume=false to start over"
    )


def read_lines(path: Path) -> list[tuple[str, dict]]:
    """``(line, record)`` of every complete record of a results file.

    Only the last line may be cut (an interruption while appending: that sample is
    redone); a bad line anywhere else means the file is not ours, or damaged.
    """
    good = []
    raw = path.read_bytes().splitlines()
    for n, data in enumerate(raw, start=1):
        last = n == len(raw)
        if not data.strip():
            continue
        try:
            line = data.decode("utf-8")
            rec = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            if last:
                continue  # a line cut by an interruption: that sample is redone
            raise _damaged(path, n, "not a JSON record") from None
        if not (isinstance(rec, dict) and "key" in rec):
            raise _damaged(path, n, "a JSON value without a 'key'")
        good.append((line, rec))
    return good


def replace_results(out: Path, lines: list[str]) -> None:
    """Write ``results.jsonl`` atomically, then drop the per-rank files merged into it."""
    atomic_write_lines(out / RESULTS, lines)
    for part in out.glob(PARTS):
        part.unlink(missing_ok=True)


def _check_same_run(out: Path, current: dict[str, Any]) -> None:
    """Refuse to mix results of different settings in one folder."""
    config = out / CONFIG
    if not config.is_file():
        return
    try:
        previous = json.loads(config.read_text(encoding="utf-8"))
        if not isinstance(previous, dict):
            raise ValueError("not a mapping")
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        raise ConfigError(
            f"{os.fspath(config)} is damaged, so the results in {os.fspath(out)!r} cannot be checked "
            "against these settings; restore it, or run with resume=false to start over"
        ) from None
    diff = [k for k in current if k in previous and previous[k] != current[k]]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"{os.fspath(out)!r} holds results of a different run ({k}={previous[k]!r}, now "
            f"{current[k]!r}); use another out=<dir>, or resume=false to overwrite"
        )


def prepare_out(out: Path, current: dict[str, Any], resume: bool) -> dict[str, dict]:
    """Create ``out``; return the finished records (by key) when resuming.

    Finished records are those of ``results.jsonl`` and of the per-rank files an
    interrupted torchrun run left behind, which are merged into ``results.jsonl`` here.
    """
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS
    parts = sorted(out.glob(PARTS))
    current = json.loads(json.dumps(current, default=str))  # as it reads back from the file
    done: dict[str, dict] = {}
    if resume and (results.is_file() or parts):
        _check_same_run(out, current)
        good = []
        for path in [results, *parts] if results.is_file() else parts:
            for line, rec in read_lines(path):
                key = str(rec["key"])
                if key not in done:  # a record merged just before an interruption may repeat
                    done[key] = rec
                    good.append(line)
        replace_results(out, good)
    else:
        results.unlink(missing_ok=True)
        for part in parts:
            part.unlink(missing_ok=True)
    atomic_write_text(out / CONFIG, json.dumps(current, indent=2, default=str))
    return done


def live_path(out: Path, info) -> Path:
    """Where this process appends its finished records."""
    return out / (f"results.rank{info.rank}.jsonl" if info.enabled else RESULTS)


def append(path: Path, records: list[dict]) -> None:
    """Append finished records and flush them to disk (they survive a kill right after)."""
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def start(out: Path, method: dict[str, Any], resume: bool, info) -> tuple[dict[str, dict], set[str]]:
    """Rank 0 prepares ``out``; returns (finished records on rank 0, finished keys on all ranks)."""
    from vlmrm.distributed import run_on_main

    held: dict[str, dict] = {}

    def prepare() -> list[str]:
        held.update(prepare_out(out, method, resume))
        return list(held)

    keys = run_on_main(prepare, info, coord_group())
    if info.enabled and not info.is_main:
        # Rank 0 has merged the rank files it can see. One still here is on a filesystem rank 0
        # does not share (another node): its samples were not counted and will be redone.
        out.mkdir(parents=True, exist_ok=True)
        live_path(out, info).unlink(missing_ok=True)
    return held, set(keys)


def finish(out: Path, info, done: dict[str, dict], new: list, keys: list[str]):
    """Gather every rank's new ``(record, seconds)`` on rank 0 and rewrite ``results.jsonl``.

    Returns (this run's records in run order, seconds per sample this session) on rank 0,
    ``(None, None)`` elsewhere. The file lists this run's records in run order, then the
    records of earlier runs outside this run's selection.
    """
    gathered = list(new)
    if info.enabled:
        import torch.distributed as dist

        from vlmrm.distributed import wait_for_all

        parts: list | None = [None] * info.world_size if info.is_main else None
        wait_for_all(info, coord_group())  # interruptible while the other ranks finish
        dist.gather_object(list(new), parts, dst=0, group=coord_group())
        if not info.is_main:
            return None, None
        gathered = [x for part in parts for x in part]  # ordered by key below
    by_key = dict(done)
    for rec, _ in gathered:
        by_key[str(rec["key"])] = rec
    kept = [by_key[k] for k in keys if k in by_key]
    chosen = set(keys)
    extra = [r for k, r in by_key.items() if k not in chosen]
    replace_results(out, [json.dumps(r) for r in [*kept, *extra]])
    return kept, [dt for _, dt in gathered]
