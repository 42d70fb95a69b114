"""Episode-batched CLIP rewards for off-policy agents: store frames, relabel the buffer.

Scoring one frame per env step keeps the CLIP model waiting on the environments and
runs it on tiny batches. The VLM-RM paper instead stored the frames and computed the
rewards of whole episodes in large batches; :class:`EpisodeRelabeller` does that for any
SB3 off-policy agent (SAC, DQN, TD3...) as a callback.

How SB3's off-policy loop runs (``OffPolicyAlgorithm.learn``)::

    while steps < total:
        collect_rollouts():             # train_freq steps (or episodes) per sub-env
            on_rollout_start()
            repeat: env.step -> on_step() -> replay_buffer.add(...)
            on_rollout_end()
        train(gradient_steps)           # samples the replay buffer

Gradient steps only happen in ``train``, and ``train`` only after ``on_rollout_end``. So:

* ``on_step`` takes the frames of the step (``info["frame"]``, rendered in the sub-env
  before any auto-reset, so the final frame of an episode is that episode's), resizes
  them to the CLIP input size and keeps them as ``uint8``; it remembers the replay-buffer
  slot the transition is about to be written to (``replay_buffer.pos``: SB3 writes all
  sub-envs of a step to one slot, one column per env) and replaces the step's reward by a
  NaN placeholder, so that a transition that somehow escaped relabelling would poison
  training loudly instead of silently training on the wrong reward;
* ``on_rollout_end`` — right before any ``train`` call — scores every stored frame in
  batches of the model's batch size and writes the rewards into their slots. All pending
  transitions are relabelled here, complete episodes and the started parts of running
  ones alike: a transition's reward depends only on its own frame, so relabelling part of
  an episode early is exact, and training never sees a placeholder. With the paper's
  settings (``train_freq`` = episode length) a rollout is exactly one episode per sub-env,
  so rewards are computed at episode ends in batches of ``n_envs × episode_length``
  frames — any size: the last batch may be short, nothing has to divide anything;
* frames are also scored early when more than ``max_pending_frames`` are stored (memory),
  or before the replay buffer would wrap onto a slot that is still waiting.

Overlap (``overlap=True``): a committed step's frames are resized and stored, and every
complete chunk of ``chunk_frames`` stored frames is scored, on one worker thread while SB3
steps the envs (torch releases the GIL in its kernels, so the reward model runs beside the
env loop on a second core); ``on_rollout_end`` waits for the worker and scores the last,
incomplete chunk. The sequential path (``overlap=False``) makes the very same calls in the
same order on the main thread — same chunks, so the same tower batches — so both write
identical rewards (``tests/test_relabel_overlap.py``). The worker only pays when a core is
free for it: on a machine whose cores are all busy it competes with the env loop for the
CPU and the GIL and was measured slower (``benchmarks/RESULTS.md``). The default,
``overlap=None``, therefore decides when training starts: a worker thread if the load
average leaves a core idle (:func:`spare_core`), else the sequential path. Either way the
rewards are the same; only the speed differs.

A step whose ``on_step`` stopped training (Ctrl-C) is never written to the buffer by SB3,
so the step's frames are held "in flight" and committed only once the loop goes on.

Time-limit ends are truncations, not terminations: SB3's ``DummyVecEnv`` and
``SubprocVecEnv`` set ``info["TimeLimit.truncated"]`` and the replay buffer (with its
default ``handle_timeout_termination=True``) stores it in ``timeouts`` and samples
``done * (1 - timeout)``, so the agent bootstraps from the stored final observation
(``info["terminal_observation"]``) of a truncated episode.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from vlmrm.errors import ConfigError
from vlmrm.preprocess import resize_frames
from vlmrm.reward import score_frames
from vlmrm.wrappers import FRAME_KEY

PLACEHOLDER_REWARD = float("nan")
#: ``reward.relabel_worker`` → the relabeller's ``overlap`` argument.
RELABEL_OVERLAP: dict[str, bool | str | None] = {"auto": None, "thread": True, "process": "process", "off": False}


def resize_uint8(frames: np.ndarray, size: int | None, mode: str = "squash") -> np.ndarray:
    """``(N, H, W, 3)`` uint8 frames resized to ``(N, size, size, 3)`` uint8 (no-op if equal).

    Uses the reward model's own resize (bicubic, antialiased, same handling of non-square
    frames) on the uint8 tensor in channels-last layout, which PyTorch runs on a fast
    integer path on CPUs (about 25x faster than on floats, within one grey level of it);
    the stored frame then differs from the float-resized one by uint8 rounding only.
    """
    frames = np.asarray(frames)
    if size is None or frames.shape[1:3] == (size, size):
        return np.ascontiguousarray(frames, dtype=np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8)).permute(0, 3, 1, 2)
    x = resize_frames(x.contiguous(memory_format=torch.channels_last), size, mode)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


@dataclass
class RewardStats:
    """Frames scored and seconds spent in the reward model (for throughput logging)."""

    frames: int = 0
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


class TimedReward:
    """Wrap a reward model to count frames and time (``stats``); forwards everything else."""

    def __init__(self, reward_model: Callable) -> None:
        self.reward_model = reward_model
        self.stats = RewardStats()

    def __call__(self, frames):
        start = time.perf_counter()
        out = self.reward_model(frames)
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        self.stats.seconds += time.perf_counter() - start
        self.stats.frames += len(frames)
        return out

    def __getattr__(self, name):
        if name == "reward_model":  # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.reward_model, name)


def storage_size(reward_model: Callable) -> tuple[int | None, str]:
    """CLIP input size and resize mode of a :class:`vlmrm.CLIPReward` (``None``: keep size)."""
    clip = getattr(reward_model, "clip", None)
    if clip is None:
        return None, "squash"
    return int(clip.image_size), str(getattr(clip, "resize_mode", "squash"))


def spare_core(cores: int | None = None, load: float | None = None) -> bool:
    """Whether a core is idle for the relabelling worker: the 1-minute load average (this
    process's own work included) is below the cores this process may use, minus a half."""
    from vlmrm.agents.config import available_cores

    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            return False
    return cores >= 2 and load < cores - 0.5


#: Image towers of at most this many parameters are small: they spend much of each frame in
#: Python between short kernels, so a worker thread takes turns with the env loop instead of
#: running beside it (``vlmrm-tiny``: 0.15 M; ViT-B-32's tower: 88 M, which a thread overlaps).
SMALL_TOWER_PARAMETERS = 20_000_000
#: Runs of at least this many env steps may start the reward model's process (it takes a
#: few seconds to start: a small part of such a run, most of a short one).
PROCESS_MIN_STEPS = 100_000


def auto_overlap(reward_model: Callable, total_steps: int, spare: bool | None = None) -> bool | str:
    """Where ``reward.relabel_worker=auto`` runs the reward model (the relabeller's ``overlap``).

    Without an idle core (:func:`spare_core`, unless ``spare`` says) on the main thread
    (``False``): a worker would compete with the env loop. With one, a small torch tower on
    the CPU in a long run scores in a process of its own (``"process"``, measured faster
    than a thread for ``vlmrm-tiny``: ``benchmarks/RESULTS.md``, "Training share"); any other
    model on a worker thread (``True``): large towers release the GIL in long kernels, and a
    process would hold a second copy of them.
    """
    if not (spare_core() if spare is None else spare):
        return False
    clip = getattr(reward_model, "clip", None)
    small_cpu_tower = (
        clip is not None
        and getattr(clip, "backend", "torch") == "torch"
        and clip.device.type == "cpu"
        and _tower_size(clip) <= SMALL_TOWER_PARAMETERS
    )
    return "process" if small_cpu_tower and int(total_steps) >= PROCESS_MIN_STEPS else True


def _tower_size(clip) -> int:
    """Numbers held by the image tower: its state dict (an int8 tower's packed weights are
    no parameters, so ``parameters()`` would call a quantised ViT-B-32 small)."""
    return sum(t.numel() for t in clip.model.visual.state_dict().values() if torch.is_tensor(t))


#: Frames per scoring call when the reward model's tower batch is unknown.
DEFAULT_CHUNK_FRAMES = 64


def chunk_frames_of(reward_model: Callable, target: int | None = None) -> int:
    """Frames per scoring call: a multiple of the CLIP tower's batch size near ``target``
    (default: one tower batch).

    A multiple of the tower batch keeps the tower's batches what one call over all pending
    frames would make; one batch keeps the tower efficient while nearly all of a rollout's
    frames are scored as the envs step (even one env's 200-step rollout).
    """
    batch = getattr(reward_model, "batch_size", None)  # CLIPReward's own, if set
    if not isinstance(batch, int) or batch < 1:
        batch = getattr(getattr(reward_model, "clip", None), "batch_size", None)
    if not isinstance(batch, int) or batch < 1:
        return target or DEFAULT_CHUNK_FRAMES
    return batch * max(1, round(target / batch)) if target else batch


class _ChunkScorer:
    """Resizes committed steps into one preallocated store and scores it in fixed chunks.

    Chunk ``k`` is always frames ``[k * chunk, (k + 1) * chunk)`` counted from the last
    :meth:`take`, and :meth:`take` scores the rest in one call: the calls do not depend on
    where they run. With ``overlap`` they run, in submission order, on one worker thread;
    without, inline. Only the worker touches the store between :meth:`take` calls.
    """

    #: Steps that may wait for the worker (their full-size frames are held meanwhile).
    MAX_QUEUED_STEPS = 64

    def __init__(self, reward_model: Callable, frame_size: int | None, resize_mode: str,
                 capacity: int, chunk: int, overlap: bool) -> None:
        self.reward_model = reward_model
        self.frame_size = frame_size
        self.resize_mode = resize_mode
        self.capacity = capacity
        self.chunk = int(chunk)
        self.overlap = overlap
        self.frames: np.ndarray | None = None
        self._stored = 0  # frames written since the last take (worker side)
        self._scored = 0  # of which scored in complete chunks
        self._rewards: list[np.ndarray] = []
        self._executor: ThreadPoolExecutor | None = None
        self._queued: deque[Future] = deque()

    def stored_shape(self, frames: list[np.ndarray]) -> tuple[int, ...]:
        """Shape of one stored frame for a step's (full-size) frames."""
        if self.frame_size is None:
            return tuple(np.shape(frames[0]))
        return (self.frame_size, self.frame_size, 3)

    def allocate(self, shape: tuple[int, ...], n: int) -> None:
        # A flush happens once `capacity` frames are committed, so one step more fits. The
        # pages of np.empty are only touched as frames arrive: peak memory is what is stored.
        self.frames = np.empty((self.capacity + n, *shape), dtype=np.uint8)

    def add(self, frames: list[np.ndarray], slot: int) -> None:
        """Store a committed step's frames at ``slot`` (and score complete chunks)."""
        if not self.overlap:
            self._ingest(frames, slot)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlmrm-relabel")
        self._queued.append(self._executor.submit(self._ingest, frames, slot))
        # Surface a worker's error at the next step, and bound the frames held in the queue.
        while self._queued and (self._queued[0].done() or len(self._queued) > self.MAX_QUEUED_STEPS):
            self._queued.popleft().result()

    def _ingest(self, frames: list[np.ndarray], slot: int) -> None:
        stored = resize_uint8(np.stack(frames), self.frame_size, self.resize_mode)
        self.frames[slot : slot + len(stored)] = stored
        self._stored = slot + len(stored)
        while self._stored - self._scored >= self.chunk:
            end = self._scored + self.chunk
            self._rewards.append(score_frames(self.reward_model, self.frames[self._scored : end]))
            self._scored = end

    def wait(self) -> None:
        """Block until every submitted step is stored (re-raising a worker's error)."""
        while self._queued:
            self._queued.popleft().result()

    def take(self, n_frames: int) -> np.ndarray:
        """The rewards of the first ``n_frames`` stored frames, in order; starts a new store."""
        self.wait()
        if self._stored != n_frames:
            raise RuntimeError(f"{self._stored} frames stored, {n_frames} expected")
        parts = self._rewards
        if self._scored < n_frames:
            parts = [*parts, score_frames(self.reward_model, self.frames[self._scored : n_frames])]
        self._rewards, self._stored, self._scored = [], 0, 0
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def close(self) -> None:
        """Finish the queued steps and stop the worker thread (a later :meth:`add` restarts it)."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


class EpisodeRelabeller(BaseCallback):
    """Store frames per step; write their rewards into the replay buffer before training.

    Args:
        reward_model: frames ``(N, H, W, 3)`` uint8 → ``N`` rewards (a
            :class:`vlmrm.CLIPReward`, or any callable).
        frame_size: side of the stored frames; default: the CLIP input size of
            ``reward_model`` (frames of another size are resized once, at storage).
        max_pending_frames: score early when this many frames wait (bounds memory).
        on_episode: called with ``(env_index, reward_return, length)`` for every episode
            whose last transition was relabelled (CLIP returns for logging).
        absorbing_horizon: the episodes' time limit, to treat a *terminated* episode's last
            state as absorbing: its reward is paid again for every step left until the
            limit, discounted by the agent's ``gamma`` (see :func:`absorbing_bonus`);
            ``None``: an episode that ends earns nothing more.
        overlap: resize and score on a worker thread while the envs step (see the module
            docstring); ``"process"``: in a child process fed through shared memory
            (:mod:`vlmrm.agents.relabel_process`: for small reward models, whose Python
            share keeps a thread from running beside the env loop); ``False`` does the same
            work on the main thread; the rewards are the same either way. ``None``
            (default): a worker thread if :func:`spare_core` says a core is idle when
            training starts.
        chunk_frames: frames per scoring call; default: :func:`chunk_frames_of`.

    See the module docstring for why training only ever samples relabelled rewards.
    """

    def __init__(
        self,
        reward_model: Callable,
        *,
        frame_size: int | None = None,
        resize_mode: str | None = None,
        max_pending_frames: int = 4096,
        on_episode: Callable[[int, float, int], None] | None = None,
        absorbing_horizon: int | None = None,
        overlap: bool | None = None,
        chunk_frames: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if max_pending_frames < 1:
            raise ConfigError(f"max_pending_frames must be >= 1, got {max_pending_frames}")
        if chunk_frames is not None and chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be >= 1, got {chunk_frames}")
        size, mode = storage_size(reward_model)
        self.reward_model = reward_model
        self.frame_size = frame_size if frame_size is not None else size
        self.resize_mode = resize_mode or mode
        self.max_pending_frames = int(max_pending_frames)
        self.on_episode = on_episode
        self.absorbing_horizon = absorbing_horizon
        self.overlap = overlap
        # Frames wait in one preallocated uint8 array (pages are only touched as frames
        # arrive), so scoring reads views of it: no per-step arrays to concatenate, and
        # peak memory stays at what is stored.
        chunk = chunk_frames or chunk_frames_of(reward_model)
        if overlap not in (*RELABEL_OVERLAP.values(), "thread"):
            raise ConfigError(f"overlap must be True/'thread', 'process', False or None, got {overlap!r}")
        if overlap == "process":
            from vlmrm.agents.relabel_process import PROCESS_CHUNK_FRAMES, ProcessScorer

            # Smaller hand-overs than one large tower batch: what the child still has to
            # score when a rollout ends is what training waits for.
            chunk = chunk_frames or min(chunk, PROCESS_CHUNK_FRAMES)
            self._scorer = ProcessScorer(
                reward_model, self.frame_size, self.resize_mode, self.max_pending_frames, chunk
            )
        else:
            self._scorer = _ChunkScorer(
                reward_model, self.frame_size, self.resize_mode, self.max_pending_frames, chunk,
                bool(overlap),
            )
        # The step SB3 is about to store: (buffer position, dones, its full-size frames).
        self._in_flight: tuple[int, np.ndarray, list[np.ndarray]] | None = None
        self._pending: list[tuple[int, np.ndarray]] = []
        self._pending_frames = 0
        self._returns: np.ndarray | None = None
        self._lengths: np.ndarray | None = None
        self.relabelled = 0  # transitions relabelled so far
        self.flushes = 0

    # -- SB3 callback hooks -------------------------------------------------------------
    def _init_callback(self) -> None:
        if not hasattr(self.model, "replay_buffer"):
            raise ConfigError(
                f"episode relabelling needs an off-policy agent with a replay buffer, got "
                f"{type(self.model).__name__}; use reward.relabel=step"
            )
        if getattr(self.model, "optimize_memory_usage", False):
            raise ConfigError("episode relabelling does not support optimize_memory_usage=True")
        if self.overlap is None:
            self._scorer.overlap = spare_core()
        n = self.training_env.num_envs
        self._returns = np.zeros(n, dtype=np.float64)
        self._lengths = np.zeros(n, dtype=np.int64)

    def _on_rollout_start(self) -> None:
        self._commit()

    def _on_step(self) -> bool:
        # Reaching this step means SB3 stored the previous one: commit its frames.
        self._commit()
        infos = self.locals["infos"]
        if any(FRAME_KEY not in info for info in infos):
            raise ConfigError(
                "episode relabelling needs each sub-env's frame in info['frame']; build the "
                "env with vlmrm.agents.make_training_env(..., render_frames=True)"
            )
        frames = [info.pop(FRAME_KEY) for info in infos]
        self._check_shape(self._scorer.stored_shape(frames), len(frames))
        rewards = self.locals["rewards"]
        rewards[...] = PLACEHOLDER_REWARD  # in place: this array is what SB3 stores next
        dones = np.asarray(self.locals["dones"], dtype=bool).copy()
        self._in_flight = (int(self.model.replay_buffer.pos), dones, frames)
        return True

    def _on_rollout_end(self) -> None:
        # Called after the rollout's last transition was stored and before train().
        self._commit()
        self.flush()

    def _on_training_end(self) -> None:
        try:
            self.flush()
        finally:
            self._scorer.close()

    # -- bookkeeping --------------------------------------------------------------------
    def _check_shape(self, shape: tuple[int, ...], n: int) -> None:
        """Allocate the store at the first step; refuse frames of another stored shape."""
        if self._scorer.frames is None:
            self._scorer.allocate(shape, n)
        if shape != self._scorer.frames.shape[1:]:
            raise ConfigError(
                f"frames changed shape from {self._scorer.frames.shape[1:]} to {shape} during "
                "training; render every sub-env at one size (or set a storage frame_size)"
            )

    @property
    def _frames(self) -> np.ndarray | None:
        """The store of pending frames (resized), for inspection."""
        return self._scorer.frames

    def _store(self, stored: np.ndarray) -> None:
        """Write already-resized frames after the committed ones (they count once committed)."""
        self._check_shape(tuple(stored.shape[1:]), stored.shape[0])
        self._scorer.frames[self._pending_frames : self._pending_frames + stored.shape[0]] = stored

    def _commit(self) -> None:
        if self._in_flight is None:
            return
        position, dones, frames = self._in_flight
        self._scorer.add(frames, self._pending_frames)
        self._pending.append((position, dones))
        self._pending_frames += dones.shape[0]
        self._in_flight = None
        buffer_size = self.model.replay_buffer.buffer_size
        if self._pending_frames >= self.max_pending_frames or len(self._pending) >= buffer_size:
            self.flush()

    def ready(self) -> None:
        """With ``overlap="process"``, wait until the reward model's process has loaded the
        model (it starts when the relabeller is made; training's first chunk waits for it
        anyway). Nothing to wait for otherwise."""
        ready = getattr(self._scorer, "ready", None)
        if ready is not None:
            ready()

    def discard_in_flight(self) -> None:
        """Forget the frames of a step that SB3 did not store (training was stopped)."""
        self._in_flight = None

    @property
    def pending_frames(self) -> int:
        return self._pending_frames

    def flush(self) -> int:
        """Score all stored frames and write the rewards into the replay buffer.

        Returns the number of transitions relabelled. Safe to call at any time between
        SB3 steps (e.g. before saving the replay buffer).
        """
        if not self._pending:
            return 0
        buffer = self.model.replay_buffer
        positions = np.array([p for p, _ in self._pending])
        dones = np.stack([d for _, d in self._pending])
        n_steps, n_envs = dones.shape
        # (A step still in flight keeps its full-size frames until it is committed.)
        rewards = self._scorer.take(self._pending_frames).reshape(n_steps, n_envs)
        self._pending.clear()
        self._pending_frames = 0
        self.relabelled += n_steps * n_envs
        self.flushes += 1
        stored = rewards.copy()  # plus, with absorbing_horizon, each termination's bonus
        terminated = dones & ~self._truncated(positions, dones.shape)
        for t in range(n_steps):
            self._returns += rewards[t]
            self._lengths += 1
            for i in np.flatnonzero(dones[t]):
                if self.absorbing_horizon is not None and terminated[t, i]:
                    left = self.absorbing_horizon - int(self._lengths[i])
                    stored[t, i] += absorbing_bonus(float(rewards[t, i]), left, float(self.model.gamma))
                if self.on_episode is not None:
                    self.on_episode(int(i), float(self._returns[i]), int(self._lengths[i]))
                self._returns[i] = 0.0
                self._lengths[i] = 0
        buffer.rewards[positions] = stored
        return n_steps * n_envs

    def _truncated(self, positions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Which stored transitions SB3 marked as time-limit truncations (not terminations)."""
        timeouts = getattr(self.model.replay_buffer, "timeouts", None)
        return timeouts[positions].astype(bool) if timeouts is not None else np.zeros(shape, dtype=bool)


def absorbing_bonus(reward: float, steps_left: int, gamma: float) -> float:
    """``sum_{k=1..steps_left} gamma**k * reward``: the last state's reward, paid until the limit.

    A CLIP reward pays for states, so on an env whose episodes end at the goal the agent
    loses every payment it would have collected by staying near the goal instead: circling
    just short of a terminal goal earns more than reaching it. Treating the terminal state
    as absorbing (the episode is over because the task is done, and the goal state would
    keep paying) removes that loss; with a centred reward a failure state keeps costing
    in the same way (CartPole's fallen pole).
    """
    if steps_left <= 0:
        return 0.0
    if gamma >= 1.0:
        return reward * steps_left
    return reward * gamma * (1.0 - gamma**steps_left) / (1.0 - gamma)

