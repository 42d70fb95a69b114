"""Data-parallel reward inference with ``torch.distributed`` (launched by ``torchrun``).

Two patterns, both started with the usual torchrun arguments (``--standalone`` on one
machine, ``--nnodes/--node-rank/--rdzv-endpoint`` across machines; torchrun's rendezvous
picks the port, nothing here is fixed):

* **Sharded jobs** (video scoring, test-time adaptation): every rank takes
  ``shard(items)`` — a strided, deterministic slice — processes it on its own device, and
  :func:`gather_to_rank0` merges the per-rank results on rank 0 in the original order.
  The output is identical to a one-process run because every item is processed by exactly
  one rank with the same code.

* **Reward serving for training** (:class:`DistributedReward`): RL training with SB3 is a
  single learner, so the envs and the agent live on rank 0 and only the CLIP forward pass
  is spread: rank 0 scatters each batch of frames across ranks, every rank encodes its
  chunk with its own CLIP replica, and the rewards are gathered back. Ranks > 0 run
  :meth:`DistributedReward.serve` until rank 0 closes the reward (or exits). We chose this
  over one-agent-per-GPU because it keeps the training algorithm and its hyper-parameters
  exactly those of the single-GPU run; only the reward is faster. ``python -m vlmrm.train
  reward.distributed=true`` under torchrun runs it (:mod:`vlmrm.agents.distributed_reward`).
  Its frames and rewards are CPU tensors, so its process group is gloo's.

Backend: NCCL when every local rank has a GPU of its own, gloo otherwise (so it runs, and
is tested, on a CPU, and with more ranks than GPUs).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from vlmrm.errors import ConfigError, VLMRMError
from vlmrm.preprocess import as_frame_tensor

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _one_gpu_per_local_rank() -> bool:
    """NCCL needs a GPU of its own for each rank of a machine; with fewer GPUs than local
    ranks (or none) the ranks talk over gloo and share the GPUs (:func:`device_for`)."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    return torch.cuda.is_available() and torch.cuda.device_count() >= local_ranks


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun set up; a no-op (rank 0 of 1) for a plain ``python`` run."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend is None:
        backend = "nccl" if _one_gpu_per_local_rank() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def device_for(info: DistInfo) -> torch.device:
    """One GPU per local rank when there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def rank_device(device: str | None, info: DistInfo) -> str | None:
    """The device a rank asks for: under torchrun one GPU per local rank, so no device (or
    ``auto``) or a plain ``cuda`` becomes ``cuda:<local rank>`` (:func:`device_for`); any other, unchanged."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        device = None
    if not info.enabled:
        return device
    if device is None:
        return str(device_for(info))
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda:{info.local_rank % torch.cuda.device_count()}"
    return device


def shutdown() -> None:
    """Leave the process group (safe to call twice or without one)."""
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(backend: str | None = None) -> Iterator[DistInfo]:
    """``with distributed_session() as info:`` — init, and always leave the group, even on Ctrl-C."""
    info = init_distributed(backend)
    try:
        yield info
    finally:
        shutdown()


def shard(items: Sequence[T], info: DistInfo) -> list[T]:
    """This rank's items: ``items[rank::world_size]`` (deterministic, balanced, order kept)."""
    return list(items[info.rank :: info.world_size])


def wait_for_all(info: DistInfo, group: Any = None, poll_s: float = 0.05) -> None:
    """Block until every rank reaches this point, staying interruptible by Ctrl-C or SIGTERM.

    A rank that finished its shard waits for the others inside a collective; a blocking
    gloo/NCCL call never returns to Python, so the KeyboardInterrupt of a Ctrl-C would
    only arrive when torchrun gives up and kills the rank (30 s later). Waiting on an
    asynchronous barrier in short sleeps lets the signal through at once; the collective
    that follows finds every rank there and returns immediately.
    """
    if not info.enabled:
        return
    work = dist.barrier(group=group, async_op=True)
    if work is not None:  # (None: a backend without asynchronous barriers)
        _interruptible(work, poll_s)


def _interruptible(work: Any, poll_s: float = 0.05) -> None:
    """Wait for an asynchronous collective in short sleeps (signals get through)."""
    while not work.is_completed():
        time.sleep(poll_s)
    work.wait()


def gather_to_rank0(local: list[Any], info: DistInfo) -> list[Any] | None:
    """Merge per-rank result lists (from :func:`shard`) back into the original item order on rank 0.

    Returns the merged list on rank 0 and ``None`` elsewhere; with one process it returns
    ``local`` unchanged.
    """
    if not info.enabled:
        return list(local)
    parts: list[list[Any]] | None = [None] * info.world_size if info.is_main else None  # type: ignore[list-item]
    wait_for_all(info)
    dist.gather_object(list(local), parts, dst=0)
    if not info.is_main:
        return None
    merged: list[Any] = []
    longest = max(len(p) for p in parts)  # type: ignore[union-attr]
    for i in range(longest):
        for p in parts:  # type: ignore[union-attr]
            if i < len(p):
                merged.append(p[i])
    return merged


# --------------------------------------------------------------------------- agreeing on errors


class AgreedError(ConfigError):
    """A problem every rank knows about; the argument layer prints it on rank 0 alone."""

    shared = True


class RankLost(VLMRMError):
    """A peer rank stopped in the middle of the job (killed, crashed, out of memory).

    The collectives of the survivors then fail inside gloo with a transport error
    (``Connection reset by peer``); this names the rank instead, and the trainer adds what
    was kept and how to resume. It is never agreed on: the peer is gone.
    """


def _peer(info: DistInfo, gone: int | None = None) -> str:
    if gone is not None:
        return f"rank {gone}"
    if info.world_size == 2:
        return f"rank {1 - info.rank}"
    return "another rank"


def rank_lost(info: DistInfo, gone: int | None = None) -> RankLost:
    """The error of a survivor whose collective failed because a peer is gone."""
    return RankLost(f"{_peer(info, gone)} stopped (SIGKILL or crash)")


def _transport_failed(exc: BaseException) -> bool:
    """Whether a collective failed because a peer went away (not a bug of the local code)."""
    if not dist.is_initialized():
        return False
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return any(w in text for w in ("gloo", "connection", "peer", "broken pipe", "timed out"))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def agree(problem: str | None, info: DistInfo, group: Any = None) -> str | None:
    """Every rank learns whether any rank met a problem, so none waits forever for the others.

    Returns ``None`` when no rank had one; the shared message when all ranks had the same;
    otherwise ``"rank r: ...; rank s: ..."``. With one process it returns ``problem``.
    """
    if not info.enabled:
        return problem
    problems: list[str | None] = [None] * info.world_size
    wait_for_all(info, group)
    dist.all_gather_object(problems, problem, group=group)
    found = [(r, p) for r, p in enumerate(problems) if p is not None]
    if not found:
        return None
    if len({p for _, p in found}) == 1:
        return found[0][1]
    return "; ".join(f"rank {r}: {p}" for r, p in found)


def run_together(fn: Callable[[], T], info: DistInfo, group: Any = None) -> T:
    """Run ``fn`` on every rank; a user-facing error on any rank is raised on all of them.

    (So no rank waits forever in a later collective for one that gave up.)
    """
    if not info.enabled:
        return fn()
    result, problem = None, None
    try:
        result = fn()
    except VLMRMError as exc:
        problem = _one_line(exc)
    agreed = agree(problem, info, group)
    if agreed is not None:
        raise AgreedError(agreed)
    return result  # type: ignore[return-value]


def run_on_main(fn: Callable[[], T], info: DistInfo, group: Any = None) -> T:
    """Run ``fn`` on rank 0 alone and hand its result (or its user-facing error) to every rank."""
    if not info.enabled:
        return fn()
    payload: list[Any] = [None, None]
    if info.is_main:
        try:
            payload = [None, fn()]
        except VLMRMError as exc:
            payload = [_one_line(exc), None]
    wait_for_all(info, group)
    dist.broadcast_object_list(payload, src=0, group=group)
    if payload[0] is not None:
        raise AgreedError(payload[0])
    return payload[1]


_STOP = -1


class DistributedReward:
    """A reward callable on rank 0 that spreads each frame batch over all ranks' CLIP replicas.

    Every rank builds the same reward model (``reward_fn``, e.g. a :class:`vlmrm.CLIPReward`
    on its own device). Rank 0 calls ``dreward(frames)`` like any reward model; ranks > 0
    call ``dreward.serve()``, which returns when rank 0 calls :meth:`close` (also called on
    garbage collection and at exit of a ``with`` block).
    """

    def __init__(self, reward_fn: Callable[[Any], Any], info: DistInfo | None = None) -> None:
        self.reward_fn = reward_fn
        self.info = info or init_distributed()
        self._closed = False
        self._lost = False  # a peer died: no collective can succeed any more
        self.frames = 0  # frames this rank scored (padding excluded)

    def __enter__(self) -> DistributedReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _local(self, frames: torch.Tensor) -> torch.Tensor:
        out = self.reward_fn(frames)
        return torch.as_tensor(np.asarray(out.cpu() if hasattr(out, "cpu") else out), dtype=torch.float32)

    def __call__(self, frames: Any) -> np.ndarray:
        if not self.info.enabled:
            return self._local(as_frame_tensor(frames).permute(0, 2, 3, 1).contiguous()).numpy()
        if not self.info.is_main:
            raise RuntimeError("only rank 0 computes rewards; other ranks call serve()")
        if self._lost:
            raise rank_lost(self.info)
        try:
            return self._spread(frames)
        except RuntimeError as exc:  # gloo: "Connection reset by peer" and the like
            if not _transport_failed(exc):
                raise
            self._lost = True
            raise rank_lost(self.info) from exc

    def _spread(self, frames: Any) -> np.ndarray:
        x = as_frame_tensor(frames).permute(0, 2, 3, 1).contiguous()  # (N, H, W, 3)
        n = x.shape[0]
        world = self.info.world_size
        per = -(-n // world)  # ceil
        header = torch.tensor([n, per, *x.shape[1:], int(x.is_floating_point())], dtype=torch.int64)
        dist.broadcast(header, src=0)
        padded = torch.zeros((per * world, *x.shape[1:]), dtype=x.dtype)
        padded[:n] = x
        chunks = list(padded.chunk(world))
        mine = torch.empty_like(chunks[0])
        dist.scatter(mine, chunks, src=0)
        rewards = self._local(mine)
        self.frames += min(per, n)
        gathered = [torch.empty(per, dtype=torch.float32) for _ in range(world)]
        dist.gather(rewards, gathered, dst=0)
        return torch.cat(gathered)[:n].numpy()

    def serve(self) -> int:
        """Ranks > 0: answer rank 0's batches until it closes the reward; returns its ``status``."""
        if not self.info.enabled or self.info.is_main:
            return 0
        try:
            return self._serve()
        except RuntimeError as exc:  # rank 0 (or another server) is gone
            if not _transport_failed(exc):
                raise
            raise rank_lost(self.info, 0 if self.info.world_size == 2 else None) from exc

    def _serve(self) -> int:
        while True:
            header = torch.empty(6, dtype=torch.int64)
            _interruptible(dist.broadcast(header, src=0, async_op=True))  # rank 0 may step envs a while
            n, per, h, w, c, is_float = (int(v) for v in header)
            if n == _STOP:
                return per
            mine = torch.empty((per, h, w, c), dtype=torch.float32 if is_float else torch.uint8)
            dist.scatter(mine, None, src=0)
            rewards = self._local(mine)
            self.frames += max(0, min(per, n - self.info.rank * per))
            dist.gather(rewards, None, dst=0)

    def close(self, status: int = 0) -> None:
        """Rank 0: release the serving ranks; ``status`` (what :meth:`serve` returns there)
        tells them how rank 0 ended (0: normally; the caller gives other codes a meaning)."""
        if self._closed or not self.info.enabled or not self.info.is_main:
            self._closed = True
            return
        self._closed = True
        if self._lost:
            raise rank_lost(self.info)
        if dist.is_initialized():
            try:
                dist.broadcast(torch.tensor([_STOP, int(status), 0, 0, 0, 0], dtype=torch.int64), src=0)
            except RuntimeError as exc:
                self._lost = True
                raise rank_lost(self.info) from exc
