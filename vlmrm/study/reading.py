"""A sweep folder as data: its ``sweep.json`` jobs and each finished run's evaluations.

The sweep module writes ``sweep.json`` (atomically, as jobs change state) and training
appends ``evaluations.jsonl`` in each run folder; this module only reads them, so a study
can run while the sweep is still going: jobs that are not ``done`` are counted, not used.
Every problem with the input becomes one :class:`~vlmrm.errors.ConfigError` line that
says what to pass instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import read_jsonl

SWEEP_FILE = "sweep.json"
EVALUATIONS_FILE = "evaluations.jsonl"
#: Job states of ``sweep.json``; every state but ``done`` and ``failed`` may still change.
STATES = ("pending", "running", "done", "failed", "preempted")
UNFINISHED = ("pending", "running", "preempted")


@dataclass
class Job:
    """One job of a sweep: its swept values, state, run folder and (when done) evaluations."""

    index: int
    swept: dict[str, str]
    state: str
    run_dir: Path
    error: str | None = None
    #: the evaluations of the run, the last record per step, in step order
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    #: the final evaluation (``final: true`` in evaluations.jsonl, else sweep.json's result)
    final: dict[str, Any] | None = None
    #: why a done job has no final evaluation to aggregate
    problem: str | None = None

    def label(self) -> str:
        values = ", ".join(f"{k}={v}" for k, v in self.swept.items())
        return f"job {self.index}" + (f" ({values})" if values else "")


@dataclass
class Sweep:
    """A sweep folder's ``sweep.json``, with each done job's evaluations read."""

    folder: Path
    name: str
    command_line: str
    launcher: dict[str, Any]
    swept_keys: list[str]
    jobs: list[Job]
    notes: list[str] = field(default_factory=list)

    def count(self, *states: str) -> int:
        return sum(j.state in states for j in self.jobs)

    @property
    def partial(self) -> bool:
        """Some job may still finish (pending, running or pre-empted)."""
        return self.count(*UNFINISHED) > 0

    def states(self) -> str:
        """``4 done, 1 running, 1 failed``: the jobs by state, in the order of :data:`STATES`."""
        order = ("done", "running", "pending", "preempted", "failed")
        return ", ".join(f"{self.count(s)} {s}" for s in order if self.count(s))


def _damaged(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"{path} is damaged ({what}); restore it from a copy, or run the sweep again "
        "(the study only reads it)"
    )


def _not_a_sweep(folder: Path) -> ConfigError:
    if (folder / "config.yaml").is_file() and (folder / "checkpoints").is_dir():
        return ConfigError(
            f"{folder} is a training run folder, not a sweep folder; pass the folder holding "
            f"{SWEEP_FILE} (<out>/multirun/<name>/), written by python -m vlmrm.train -m ..."
        )
    inside = sorted(p.parent for p in folder.glob(f"*/{SWEEP_FILE}"))
    if inside:
        return ConfigError(
            f"{folder} holds sweeps, not a sweep's {SWEEP_FILE}; pass one of them, e.g. {inside[-1]}"
        )
    return ConfigError(
        f"{folder} is not a sweep folder (no {SWEEP_FILE}); pass the folder a -m sweep wrote, "
        "<out>/multirun/<name>/"
    )


def _text(value: Any) -> str:
    """A swept value as text (they are strings in sweep.json; a number is accepted too)."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def _job(folder: Path, path: Path, i: int, entry: Any) -> Job:
    if not isinstance(entry, dict):
        raise _damaged(path, f"job {i} is not an object")
    swept = entry.get("swept") or {}
    state = entry.get("state")
    run_dir = entry.get("run_dir")
    if not isinstance(swept, dict) or state not in STATES or not isinstance(run_dir, str):
        raise _damaged(path, f"job {i} lacks its swept values, a known state or its run_dir")
    index = entry.get("index", i)
    return Job(
        index=int(index) if isinstance(index, int) else i,
        swept={str(k).lstrip("+"): _text(v) for k, v in swept.items()},
        state=state,
        run_dir=(folder / run_dir) if not Path(run_dir).is_absolute() else Path(run_dir),
        error=entry.get("error"),
        final=_result_eval(entry.get("result")),
    )


def _result_eval(result: Any) -> dict[str, Any] | None:
    final = result.get("final_eval") if isinstance(result, dict) else None
    return dict(final) if isinstance(final, dict) else None


def read_sweep(folder: str | Path) -> Sweep:
    """Read ``<folder>/sweep.json`` and the evaluations of every done job.

    Raises :class:`ConfigError` for a folder that is not a sweep folder or a damaged
    ``sweep.json``. A done job whose run folder holds no readable final evaluation is kept
    with a :attr:`Job.problem` (listed, not aggregated).
    """
    folder = Path(folder)
    path = folder / SWEEP_FILE
    if not path.is_file():
        raise _not_a_sweep(folder)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None
    except ValueError as exc:
        raise _damaged(path, f"not JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise _damaged(path, "no job list")
    jobs = [_job(folder, path, i, e) for i, e in enumerate(doc["jobs"])]
    keys = doc.get("swept_keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        keys = [k for j in jobs for k in j.swept]
    keys = list(dict.fromkeys(k.lstrip("+") for k in keys))
    launcher = doc.get("launcher") if isinstance(doc.get("launcher"), dict) else {}
    sweep = Sweep(
        folder=folder,
        name=str(doc.get("name") or folder.name),
        command_line=str(doc.get("command_line") or ""),
        launcher=launcher,
        swept_keys=keys,
        jobs=jobs,
    )
    for job in jobs:
        if job.state == "done":
            _read_evaluations(job, sweep.notes)
    return sweep


def latest_per_step(records: list[Any]) -> list[dict[str, Any]]:
    """The last record of each step, in step order (a resumed run may repeat a step)."""
    by_step: dict[int, dict[str, Any]] = {}
    for rec in records:
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            by_step[int(rec["step"])] = rec
    return [by_step[s] for s in sorted(by_step)]


def _read_evaluations(job: Job, notes: list[str]) -> None:
    """Fill ``job.evaluations`` and ``job.final`` from its run folder (done jobs only)."""
    path = job.run_dir / EVALUATIONS_FILE
    if path.is_file():
        try:
            records, bad = read_jsonl(path)
        except OSError as exc:
            job.problem = f"cannot read {path}: {exc.strerror or exc}"
            return
        if bad:
            notes.append(f"{path}: skipped {bad} damaged line(s)")
        job.evaluations = latest_per_step(records)
        finals = latest_per_step([r for r in records if isinstance(r, dict) and r.get("final")])
        if finals:
            job.final = finals[-1]
    if job.final is None:
        job.problem = (
            f"no final evaluation in {path}" if path.is_file() or job.run_dir.is_dir()
            else f"its run folder {job.run_dir} is missing"
        )


def check_by(sweep: Sweep, by: list[str] | None) -> list[str]:
    """The keys the jobs are grouped by: ``by``, or the swept keys other than ``seed``."""
    if by is None:
        return [k for k in sweep.swept_keys if k != "seed"]
    for key in by:
        if key not in sweep.swept_keys:
            swept = ", ".join(sweep.swept_keys) or "none"
            raise ConfigError(
                f"by={key!r} is not a swept setting of {sweep.folder} (swept: {swept}); "
                "pass by= with swept settings, or leave it out to group by all but seed"
            )
    return by


def group_jobs(sweep: Sweep, by: list[str]) -> list[tuple[dict[str, str], list[Job]]]:
    """Jobs grouped by their values of ``by``, groups in the order of their first job."""
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in sweep.jobs:
        groups.setdefault(tuple(job.swept.get(k, "") for k in by), []).append(job)
    return [(dict(zip(by, key, strict=True)), jobs) for key, jobs in groups.items()]
