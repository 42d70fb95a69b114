"""Episode relabelling with the reward model in a process of its own.

A worker *thread* only overlaps the reward model with the env loop while the model runs in
long GIL-free kernels. A small model (``vlmrm-tiny``, or any tower that takes a fraction of a
millisecond per frame) spends much of its time in Python between short kernels, and a
Python env loop holds the GIL the rest of the time, so the two threads take turns
(``benchmarks/RESULTS.md``, "Training share"). Here the model runs in a child process on a
core of its own:

* the frames of committed steps are copied into a ring of shared memory (full size, as
  rendered) — the only per-step work left on the env loop;
* each complete chunk of ``chunk`` frames is handed to the child as a few integers on a
  pipe; the child resizes the chunk to the CLIP input size and scores it with its own copy
  of the reward model (pickled once at start), and sends the rewards back;
* a chunk's ring slot is reused only after its rewards arrived, so the ring bounds memory;
* the child holds at most two chunks at a time; the others wait in the ring, so that when a
  rollout ends and training must wait for every reward, this process scores the newest
  chunks left with its own copy of the model while the child finishes the oldest.

The chunks follow the in-process scorer's rule (chunk ``k`` is frames ``[k * chunk,
(k + 1) * chunk)`` since the last :meth:`take`, the rest scored at :meth:`take`); with the
same ``chunk_frames`` the child makes the same calls on the same frames, so the rewards are
identical (``tests/test_relabel_overlap.py``). By default the hand-overs are smaller than
one large tower batch (:data:`PROCESS_CHUNK_FRAMES`). The child ignores SIGINT: a Ctrl-C at the terminal
reaches the whole process group, and the trainer's graceful stop, not the child, decides
what happens; a child that dies is reported as one error at the next hand-over.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from typing import NoReturn

import numpy as np
import torch

from vlmrm.agents.relabel import TimedReward, _ChunkScorer, resize_uint8
from vlmrm.errors import VLMRMError
from vlmrm.reward import score_frames

#: Chunk slots in the shared-memory ring (each ``chunk`` full-size frames).
RING_CHUNKS = 8
#: Frames per hand-over by default (at most): small enough that little is left to score
#: when a rollout ends, large enough for the tower's batches.
PROCESS_CHUNK_FRAMES = 64
#: Chunks handed to the child at a time: one to score and one queued behind it, so that it
#: never waits for the next; the rest wait in the ring, where this process can still take
#: them at the end of a rollout.
MAX_IN_FLIGHT = 2
#: Seconds the child may take to start (spawn, imports, unpickling the reward model).
START_TIMEOUT_S = 600.0


class RewardWorkerError(VLMRMError):
    """The reward model's process failed or stopped."""


def _serve(conn, model_bytes: bytes, frame_size: int | None, resize_mode: str, threads: int) -> None:
    """The child: load the reward model, then score the ring slots the parent names."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    shm = ring = None
    try:
        # The parent's thread policy (a fresh process would take one thread per core, and
        # its idle OpenMP threads would spin on the core the env loop runs on).
        torch.set_num_threads(threads)
        reward_model = pickle.loads(model_bytes)
        conn.send(("ready",))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            if msg[0] == "ring":  # the parent's ring, created once the frame size is known
                shm = SharedMemory(name=msg[1])
                ring = np.ndarray(msg[2], dtype=np.uint8, buffer=shm.buf)
                continue
            _, start, count = msg
            begin = time.perf_counter()
            rewards = _score_slot(reward_model, ring, start, count, frame_size, resize_mode)
            conn.send(("rewards", rewards, time.perf_counter() - begin))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    except BaseException:  # noqa: BLE001 - the parent raises it, with the child's traceback
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, BrokenPipeError):
            pass
    finally:
        ring = None
        if shm is not None:
            shm.close()


def _score_slot(reward_model: Callable, ring: np.ndarray, start: int, count: int, frame_size: int | None,
                resize_mode: str) -> np.ndarray:
    """Resize and score ``count`` frames of the ring from ``start``: the one scoring call of
    both processes, so a chunk's rewards do not depend on which of them scored it."""
    frames = resize_uint8(ring[start : start + count], frame_size, resize_mode)
    return np.asarray(score_frames(reward_model, frames))


class ProcessScorer(_ChunkScorer):
    """The in-process chunk scorer's interface, with the reward model in a child process."""

    def __init__(self, reward_model: Callable, frame_size: int | None, resize_mode: str,
                 capacity: int, chunk: int) -> None:
        # The parent's store only serves the shape checks: its pages are never touched.
        super().__init__(reward_model, frame_size, resize_mode, capacity, chunk, overlap=False)
        self.overlap = "process"
        self._shm: SharedMemory | None = None
        self._ring: np.ndarray | None = None
        self._proc = None
        self._conn = None
        self._written = 0  # frames written since the last take
        self._unsent: deque[tuple[int, int]] = deque()  # complete chunks (index, frames) not yet handed over
        self._in_flight: deque[int] = deque()  # chunk indices handed over and not answered, in order
        self._done: dict[int, np.ndarray] = {}  # rewards by chunk index, since the last take
        self._ready = False
        self.start()

    # -- the scorer interface -----------------------------------------------------------
    def add(self, frames: list[np.ndarray], slot: int) -> None:
        """Copy a committed step's frames into the ring; hand over each complete chunk."""
        if self._ring is None:
            self._open_ring(np.shape(frames[0]))
        for frame in frames:
            if np.shape(frame) != self._ring.shape[1:]:
                raise RewardWorkerError(
                    f"frames changed size from {self._ring.shape[1:]} to {np.shape(frame)} during "
                    "training; render every sub-env at one size"
                )
            k, offset = divmod(self._written, self.chunk)
            if offset == 0:  # chunk k reuses the ring slot of chunk k - RING_CHUNKS: wait for it
                while k >= RING_CHUNKS and (k - RING_CHUNKS) not in self._done:
                    self._pump()
                    if (k - RING_CHUNKS) not in self._done:
                        self._receive()
            self._ring[self._slot_start(k) + offset] = frame
            self._written += 1
            if offset == self.chunk - 1:
                self._unsent.append((k, self.chunk))
                self._pump()

    def wait(self) -> None:
        """Block until every chunk handed over is scored."""
        while self._in_flight:
            self._receive()

    def take(self, n_frames: int) -> np.ndarray:
        """The rewards of the ``n_frames`` frames written since the last take, in order.

        What is left when a rollout ends is shared: the child goes on with the oldest chunks
        while this process scores the newest itself (with its own copy of the reward model,
        the same calls on the same frames), so training waits about half as long.
        """
        if self._written != n_frames:
            raise RuntimeError(f"{self._written} frames stored, {n_frames} expected")
        complete, rest = divmod(self._written, self.chunk)
        if rest:
            self._unsent.append((complete, rest))
        while self._unsent or self._in_flight:
            self._pump()
            if self._unsent:
                k, count = self._unsent.pop()  # the newest: the child takes them from the other end
                self._done[k] = self._score_here(k, count)
            elif self._in_flight:
                self._receive()
        parts = [self._done[k] for k in sorted(self._done)]
        self._done = {}
        self._written = 0
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _score_here(self, k: int, count: int) -> np.ndarray:
        return _score_slot(self.reward_model, self._ring, self._slot_start(k), count, self.frame_size,
                           self.resize_mode)

    def _slot_start(self, k: int) -> int:
        """The ring index of chunk ``k``'s first frame."""
        return (k % RING_CHUNKS) * self.chunk

    def _pump(self) -> None:
        """Take the answers that have arrived, and keep the child's queue at
        :data:`MAX_IN_FLIGHT` chunks (the oldest first)."""
        while self._in_flight and self._conn.poll(0):
            self._receive()
        while self._unsent and len(self._in_flight) < MAX_IN_FLIGHT:
            self._send(*self._unsent.popleft())

    def close(self) -> None:
        """Finish the chunks handed over, stop the child and free the ring."""
        try:
            if self._proc is not None and self._proc.is_alive():
                self.wait()
        finally:
            self._stop()

    # -- the child ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the child (it loads the reward model while the caller goes on)."""
        if self._proc is not None:
            return
        timed = isinstance(self.reward_model, TimedReward)  # its time is counted here, not there
        model = self.reward_model.reward_model if timed else self.reward_model
        # spawn, not fork: the parent has torch's (and possibly OpenMP's) threads running.
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, name="vlmrm-reward",
            args=(child, pickle.dumps(model), self.frame_size, self.resize_mode, torch.get_num_threads()),
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._ready = False

    def ready(self) -> None:
        """Block until the child has loaded the reward model (raising what stopped it)."""
        self.start()
        if self._ready:
            return
        if not self._conn.poll(START_TIMEOUT_S):
            self._stop()
            raise RewardWorkerError(f"the reward model's process did not start within {START_TIMEOUT_S:.0f} s")
        self._check(self._conn_recv())
        self._ready = True

    def _open_ring(self, frame_shape: tuple[int, ...]) -> None:
        """Create the shared ring for frames of this shape and hand it to the child."""
        self.ready()
        ring_shape = (RING_CHUNKS * self.chunk, *frame_shape)
        self._shm = SharedMemory(create=True, size=int(np.prod(ring_shape)))
        self._ring = np.ndarray(ring_shape, dtype=np.uint8, buffer=self._shm.buf)
        try:
            self._conn.send(("ring", self._shm.name, ring_shape))
        except (BrokenPipeError, OSError):
            self._died()

    def _send(self, k: int, count: int) -> None:
        try:
            self._conn.send(("score", self._slot_start(k), count))
        except (BrokenPipeError, OSError):
            self._died()
        self._in_flight.append(k)

    def _receive(self) -> None:
        msg = self._check(self._conn_recv())
        _, rewards, seconds = msg
        self._done[self._in_flight.popleft()] = rewards
        if isinstance(self.reward_model, TimedReward):  # count the child's work as its own
            self.reward_model.stats.frames += len(rewards)
            self.reward_model.stats.seconds += seconds

    def _conn_recv(self) -> tuple:  # noqa: RET503 - _died raises
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._died()

    def _check(self, msg: tuple) -> tuple:
        if msg[0] == "error":
            self._stop()
            raise RewardWorkerError(f"the reward model failed in its process:\n{msg[1]}")
        return msg

    def _died(self) -> NoReturn:
        code = None
        if self._proc is not None:
            self._proc.join(timeout=10)  # the pipe closes a moment before the exit is reaped
            code = self._proc.exitcode
        self._stop()
        raise RewardWorkerError(
            f"the reward model's process stopped (exit code {code}); the frames it had not "
            "scored are lost with this run's last rollout: resume from the last checkpoint"
        )

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.is_alive():
                    self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            # The child exits by itself on "stop" (an interpreter with torch takes a moment
            # to exit, which training need not wait for); multiprocessing reaps it, and a
            # child still there when this process exits is stopped with it (daemon).
            mp.active_children()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ring = None
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None
        self._in_flight.clear()
        self._unsent.clear()
