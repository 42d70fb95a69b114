"""The launcher settings of a sweep: ``launcher=NAME`` and ``launcher.<key>=VALUE``.

They are sweep settings, not the command's: :func:`split_sweep_args` takes them (and
``run_name=``, the sweep folder's name) out of the command line before the command parses
its own settings. Their field docstrings are the ``--help`` section every sweepable
command shows (:func:`help_section`), so the keys are documented where the others are.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from vlmrm.errors import ConfigError

LAUNCHERS = ("basic", "submitit_local", "submitit_slurm")


@dataclass
class LauncherSettings:
    """How the jobs of a ``-m`` sweep run."""

    name: str = "basic"
    """launcher=basic | submitit_local | submitit_slurm. basic: one job after another in
    this process; submitit_local: each job in its own worker process, launcher.parallel at
    once, one GPU each when there are GPUs; submitit_slurm: a SLURM job array."""
    parallel: int | None = None
    """Jobs at once (submitit_local default: the number of CUDA devices, else half the
    cores; submitit_slurm: the array throttle %N, default all)."""
    partition: str | None = None
    """SLURM partition (sbatch --partition)."""
    account: str | None = None
    """SLURM account (sbatch --account)."""
    qos: str | None = None
    """SLURM quality of service (sbatch --qos)."""
    time_min: int | None = None
    """Wall-time limit of one job in minutes (sbatch --time; default 60 on SLURM, none
    locally). A job that reaches it is checkpointed and requeued."""
    gpus_per_job: int | None = None
    """GPUs per job (sbatch --gpus-per-node; default 0 on SLURM; submitit_local gives
    each job one GPU when there are GPUs)."""
    cpus_per_job: int | None = None
    """CPU cores per job (sbatch --cpus-per-task; submitit_local: the cores divided by
    launcher.parallel); the job's torch threads follow it."""
    mem_gb: int | None = None
    """Memory per job in GB (sbatch --mem)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before each job, e.g. launcher.setup='[module load cuda,source
    .venv/bin/activate]'."""
    extra: dict[str, str] = field(default_factory=dict)
    """Any other sbatch option: launcher.extra.constraint=a100 adds --constraint=a100."""
    signal_delay_s: int = 120
    """Seconds before the time limit at which SLURM sends SIGUSR2 (--signal=USR2@N): the
    job saves a checkpoint and is requeued."""

    def validate(self) -> LauncherSettings:
        if self.name not in LAUNCHERS:
            raise ConfigError(f"unknown launcher={self.name!r}; choose one of: {', '.join(LAUNCHERS)}")
        for key in ("parallel", "time_min", "gpus_per_job", "cpus_per_job", "mem_gb"):
            value = getattr(self, key)
            if value is not None and value < (0 if key == "gpus_per_job" else 1):
                raise ConfigError(f"launcher.{key}={value}: must be at least "
                                  f"{0 if key == 'gpus_per_job' else 1}")
        if self.signal_delay_s < 0:
            raise ConfigError(f"launcher.signal_delay_s={self.signal_delay_s}: must be at least 0")
        return self

    def to_dict(self) -> dict:
        """The settings for ``sweep.json``: the launcher's name and the keys that were set."""
        from dataclasses import asdict

        return {k: v for k, v in asdict(self).items() if v not in (None, [], {}) or k == "name"}


def _is_sweep_key(arg: str) -> bool:
    key = arg.partition("=")[0].lstrip("+")
    return key in ("launcher", "run_name") or key.startswith("launcher.")


def split_sweep_args(argv: Sequence[str], base: dict | None = None
                     ) -> tuple[LauncherSettings, str | None, list[str]]:
    """``(launcher settings, sweep name, the command's own arguments)``.

    ``base``: settings saved in a sweep folder, which the given keys override (resume).
    """
    from vlmrm.cli.args import parse_settings

    pairs, name, rest = [], None, []
    for arg in argv:
        if not _is_sweep_key(arg):
            rest.append(arg)
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+")
        if key == "run_name":
            name = value.strip().strip("'\"") or None
        elif key == "launcher":
            pairs.append(f"name={value}")
        else:
            pairs.append(f"{key.removeprefix('launcher.')}={value}")
    base_pairs = [f"{k}={_dotlist_value(v)}" for k, v in (base or {}).items()]
    try:
        settings = parse_settings(LauncherSettings, base_pairs + pairs)
    except ConfigError as exc:
        message = str(exc).replace("unknown setting '", "unknown setting 'launcher.")
        raise ConfigError(message.replace("did you mean '", "did you mean 'launcher.")) from None
    return settings, name, rest


def _dotlist_value(value) -> str:
    import json

    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def default_parallel(settings: LauncherSettings) -> int:
    """Jobs at once on this machine: ``launcher.parallel``, else the CUDA devices, else half the cores."""
    if settings.parallel:
        return settings.parallel
    gpus = cuda_devices()
    return len(gpus) if gpus else max(1, cores() // 2)


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cuda_devices() -> list[int]:
    """The CUDA devices a local job may be given (torch's count; none without CUDA)."""
    try:
        import torch

        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    except Exception:  # noqa: BLE001 - no usable CUDA: the jobs run on the CPU
        return []


def help_section() -> str:
    """The ``--help`` section of the launcher keys (from :class:`LauncherSettings`' docstrings)."""
    from vlmrm.cli.args import _setting_rows, _show

    lines = [
        "sweeps (-m key=a,b ...: one job per combination, in <out>/multirun/<run_name>/;",
        "  -m resume=<sweep folder> reruns the jobs that are not done):",
        "  run_name=(a timestamp)",
        "      the sweep folder's name",
    ]
    for key, default, doc in _setting_rows(LauncherSettings, "launcher."):
        shown = f"launcher={default}" if key == "launcher.name" else f"{key}={_show(default)}"
        lines.append(f"  {shown}")
        lines.extend(textwrap.wrap(doc, 88, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)
