"""A TTA job: what every task's run step shares — the run order, this rank's shard of the
pending samples, the models on this rank's device, the progress bar and the running tally.

A run: every rank agrees on the settings and data (:func:`vlmrm.distributed.run_together`),
rank 0 prepares the output folder (:mod:`vlmrm.tta.jobs.results`), every rank adapts its
shard of the pending samples (appending records as they finish), rank 0 merges them and
reports (:mod:`vlmrm.tta.jobs.report`). The task-specific loops are the tasks' ``run``
modules (:mod:`vlmrm.tta.classification.run`, :mod:`vlmrm.tta.retrieval.run`,
:mod:`vlmrm.tta.captioning.run`); they import this module, never the other way round, and
the command (:mod:`vlmrm.tta.cli`) picks the task's run step.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmrm.tta.jobs.results import RESULTS, append, live_path, start

if TYPE_CHECKING:  # the settings are the command layer's; a run only reads them
    from vlmrm.tta.settings import TTASettings


def load_models(cfg: TTASettings, info: Any = None) -> tuple[Any, Any]:
    """The policy and the reward models (:class:`~vlmrm.tta.CLIPFeedback`) on this rank's device."""
    from vlmrm.distributed import DistInfo, rank_device
    from vlmrm.models import load_clip, resolve_device, training_precision
    from vlmrm.tta.core.feedback import CLIPFeedback

    info = info or DistInfo()
    asked = None if cfg.device == "auto" else cfg.device
    device = resolve_device(rank_device(asked, info))

    def load(spec: str, pretrained: str | None, precision: str, amp_dtype: str | None = None):
        # CLIP's own evaluation transform for queries, views and gallery images.
        return load_clip(spec, device=device, precision=precision, pretrained=pretrained,
                         resize_mode="center_crop", amp_dtype=amp_dtype)  # fmt: skip

    policy = load(cfg.model, cfg.pretrained, **training_precision(cfg.precision, device))
    models = []
    for spec, pretrained in cfg.reward_models():
        # The policy is never modified (adapted weights are copies), so it can double as a reward model.
        same = (spec, pretrained) == (cfg.model, cfg.pretrained)
        models.append(policy if same else load(spec, pretrained, "auto"))
    return policy, CLIPFeedback(models, cfg.reward_weights, scale=cfg.reward_scale)


def order_of(n: int, cfg: TTASettings) -> list[int]:
    """The run order of ``n`` samples: index order, or a seeded permutation; cut at ``limit``."""
    order = list(range(n))
    if cfg.shuffle:
        import torch

        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(cfg.seed))).tolist()
    if cfg.limit is not None:
        order = order[: int(cfg.limit)]
    return order


def prefetch(loader: Callable[[Any], Any], items: Sequence, lookahead: int = 8) -> Iterator:
    """Decode upcoming images in a background thread while the current one adapts."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(loader, it) for it in items[:lookahead]]
        for i in range(len(items)):
            if i + lookahead < len(items):
                futures.append(pool.submit(loader, items[i + lookahead]))
            yield futures[i].result()
            futures[i] = None


def bar_desc(desc: str, info: Any) -> str:
    """A progress bar's label, with the rank under torchrun."""
    return f"[rank {info.rank}/{info.world_size}] {desc}" if info.enabled else desc


def progress_bar(cfg: TTASettings, total: int | None, initial: int, desc: str, position: int = 0):
    """A tqdm bar (off with ``progress=false``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not cfg.progress,
                dynamic_ncols=True, position=position)  # fmt: skip


def note(message: str) -> None:
    """A line for the user on stderr."""
    print(message, file=sys.stderr)


@dataclass
class Job:
    """One run's samples: the run order, what is done, what is left, and this rank's share."""

    cfg: TTASettings
    info: Any
    out: Path
    done: dict[str, dict]  # finished records (rank 0)
    keys: list[str]  # run order
    pending: list  # samples (indices) still to adapt, all ranks
    mine: list  # this rank's share of them

    @property
    def live(self) -> Path:
        """The file this rank appends its records to."""
        return live_path(self.out, self.info)

    def announce(self, head: str) -> None:
        """Rank 0: what the run holds, how much is done, where results go."""
        procs = f" on {self.info.world_size} processes" if self.info.enabled else ""
        left = len(self.pending)
        note(f"{head}; {len(self.keys) - left} done, {left} to go{procs} → "
             f"{os.fspath(self.out / RESULTS)}")  # fmt: skip

    def batches(self) -> list[Sequence]:
        """This rank's share in consecutive slices of ``batch_size`` (at least one)."""
        size = max(1, int(self.cfg.batch_size))
        return [self.mine[i : i + size] for i in range(0, len(self.mine), size)]

    def bar(self, desc: str):
        """This rank's progress bar and the records it starts from (resumed ones, one process)."""
        if self.info.enabled:
            bar = progress_bar(self.cfg, len(self.mine), 0, bar_desc(desc, self.info), self.info.local_rank)
            return bar, []
        seen = [self.done[k] for k in self.keys if k in self.done]
        return progress_bar(self.cfg, len(self.keys), len(seen), desc), seen


class Tally:
    """This rank's finished records: appended (and flushed) to its live results file as they
    come, and the running zero-shot vs adapted score on the progress bar, resumed records
    included. ``score(record)`` gives the record's ``(zero-shot, adapted)`` values and
    ``show(zero_shot_mean, adapted_mean)`` the bar's text.
    """

    def __init__(
        self,
        job: Job,
        desc: str,
        score: Callable[[dict], tuple[float, float]],
        show: Callable[[float, float], str],
    ) -> None:
        self.job, self.score, self.show = job, score, show
        self.bar, seen = job.bar(desc)
        self.sums = [0.0, 0.0]
        for rec in seen:
            self._count(rec)
        self.n = len(seen)
        self.new: list[tuple[dict, float]] = []

    def _count(self, rec: dict) -> None:
        zeroshot, adapted = self.score(rec)
        self.sums[0] += zeroshot
        self.sums[1] += adapted

    def add(self, records: list[dict], seconds: float) -> None:
        """Keep ``records`` (each took ``seconds``), then move the bar."""
        append(self.job.live, records)
        for rec in records:
            self._count(rec)
            self.new.append((rec, seconds))
        self.n += len(records)
        self.bar.update(len(records))
        self.bar.set_postfix_str(self.show(self.sums[0] / self.n, self.sums[1] / self.n))

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Tally:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def timed(adapt: Callable[..., Any], batch: Sequence, *args: Any) -> tuple[Any, float]:
    """``adapt(*args)`` and the seconds it took per item of ``batch`` (what a record keeps)."""
    t0 = time.perf_counter()
    results = adapt(*args)
    return results, (time.perf_counter() - t0) / len(batch)


def start_job(cfg: TTASettings, info: Any, method: dict[str, Any], order: list, keys: list[str]) -> Job:
    """Prepare ``out`` (rank 0; resuming merges what is there) and split the pending samples."""
    from vlmrm.distributed import shard

    out = cfg.out_dir()
    done, done_keys = start(out, method, cfg.resume, info)
    pending = [i for i, key in zip(order, keys, strict=True) if key not in done_keys]
    return Job(cfg, info, out, done, keys, pending, shard(pending, info))
