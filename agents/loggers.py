"""Where a run's scalars go: TensorBoard (always), Weights & Biases with ``logger=wandb``.

One SB3 :class:`~stable_baselines3.common.logger.Logger` serves every output, so W&B gets
exactly the scalars TensorBoard gets, at the same env steps. It drops SB3's
``rollout/ep_rew_mean`` and ``rollout/ep_len_mean``: the trainer logs the same episodes as
``rollout/gt_return`` (the env's own reward) beside ``rollout/clip_return`` (the CLIP
reward) and ``rollout/ep_length``, and "ep_rew" would not say which reward it is.

With ``logger=wandb`` the W&B run gets the resolved config, the scalars, and each
evaluation video (``videos/step_<N>.mp4``) as ``eval/video`` when it is written. Offline
(``WANDB_MODE=offline`` or ``wandb.mode=offline``) it writes under ``<run>/wandb/`` and
needs no network (``wandb sync`` uploads it later). The W&B run id is kept in
``<run>/wandb_id.txt``, so a resumed run continues the same W&B run.

The run logger is a context manager (``with model.logger: ...``): however the training ends
(normally, a crash, an abort) its outputs are closed and the W&B run is finished, marked
failed (exit code 1) when the training raised, so no W&B run is left open in a process that
goes on (the ``vlmrm.train`` API, an in-process sweep). ``run.finish()`` hands the run's
last records to W&B's service process, which closes the offline run file
(``run-<id>.wandb``) moments later; the file is complete once that process has ended
(``wandb.teardown()``, or the exit of the ``python -m vlmrm.train`` process).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, make_output_format

from vlmrm.errors import ConfigError

#: SB3 keys replaced by the trainer's unambiguous ones (rollout/gt_return, rollout/ep_length).
DROPPED = frozenset({"rollout/ep_rew_mean", "rollout/ep_len_mean"})


class RunLogger(Logger):
    """SB3's logger without the keys in :data:`DROPPED`."""

    def record(self, key: str, value: Any, exclude=None) -> None:
        if key not in DROPPED:
            super().record(key, value, exclude)

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close every output; a W&B run is finished as failed when the training raised."""
        failed = exc_type is not None
        for output in self.output_formats:
            if isinstance(output, WandbOutput):
                output.close(exit_code=1 if failed else 0)
        self.close()  # (every output's close may be called again: the normal end closes them first)


class WandbOutput(KVWriter):
    """Scalars (and new evaluation videos) to a W&B run, at SB3's step."""

    def __init__(self, run, video_dir: Path | None = None) -> None:
        self.run = run
        self.video_dir = video_dir
        self._logged: set[Path] = set(video_dir.glob("*.mp4")) if video_dir and video_dir.is_dir() else set()

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        import wandb

        data: dict[str, Any] = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if "wandb" in excluded or isinstance(value, str):
                continue
            if isinstance(value, (int, float, np.integer, np.floating)):
                data[key] = float(value)
        if self.video_dir is not None and self.video_dir.is_dir():
            for path in sorted(set(self.video_dir.glob("*.mp4")) - self._logged):
                data["eval/video"] = wandb.Video(str(path), format="mp4")
                self._logged.add(path)
        if data:
            self.run.log(data, step=int(step))

    def close(self, exit_code: int = 0) -> None:
        """Finish the W&B run (once: later calls do nothing)."""
        self.run.finish(exit_code=exit_code)


def start_wandb(cfg: DictConfig, run_dir: Path):
    """``wandb.init`` for a run folder: its config, name and (on resume) its earlier id."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("logger=wandb needs the wandb package: pip install wandb") from None
    w = cfg.wandb
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id + "\n")
    return wandb.init(
        project=w.project, entity=w.entity, group=w.group, tags=list(w.tags or []) or None,
        name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir), mode=w.mode,
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def make_logger(cfg: DictConfig, run_dir: Path) -> Logger:
    """The run's logger: ``tb/``, stdout with ``verbose>0``, W&B with ``logger=wandb``."""
    formats: list[KVWriter] = [make_output_format("tensorboard", str(run_dir / "tb"))]
    if cfg.get("verbose"):
        formats.append(HumanOutputFormat(sys.stdout))
    if cfg.get("logger") == "wandb":
        video_dir = run_dir / "videos" if cfg.eval.get("video", True) else None
        formats.append(WandbOutput(start_wandb(cfg, run_dir), video_dir))
    return RunLogger(folder=str(run_dir), output_formats=formats)
