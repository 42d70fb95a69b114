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

A step whose ``on_step`` stopped training (Ctrl-C) is never written to the buffer by SB3,
so the step's frames are held "in flight" and committed only once the loop goes on.

Time-limit ends are truncations, not terminations: SB3's ``DummyVecEnv`` and
``SubprocVecEnv`` set ``info["TimeLimit.truncated"]`` and the replay buffer (with its
default ``handle_timeout_termination=True``) stores it in ``timeouts`` and samples
``done * (1 - timeout)``, so the agent bootstraps from the stored final observation
(``info["terminal_observation"]``) of a truncated episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from vlmrm.errors import ConfigError
from vlmrm.preprocess import resize_frames
from vlmrm.reward import score_frames
from vlmrm.wrappers import FRAME_KEY

PLACEHOLDER_REWARD = float("nan")


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
        return getattr(self.reward_model, name)


def storage_size(reward_model: Callable) -> tuple[int | None, str]:
    """CLIP input size and resize mode of a :class:`vlmrm.CLIPReward` (``None``: keep size)."""
    clip = getattr(reward_model, "clip", None)
    if clip is None:
        return None, "squash"
    return int(clip.image_size), str(getattr(clip, "resize_mode", "squash"))


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
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if max_pending_frames < 1:
            raise ConfigError(f"max_pending_frames must be >= 1, got {max_pending_frames}")
        size, mode = storage_size(reward_model)
        self.reward_model = reward_model
        self.frame_size = frame_size if frame_size is not None else size
        self.resize_mode = resize_mode or mode
        self.max_pending_frames = int(max_pending_frames)
        self.on_episode = on_episode
        self.absorbing_horizon = absorbing_horizon
        # Frames wait in one preallocated uint8 array (pages are only touched as frames
        # arrive), so scoring reads a view of it: no per-step arrays to concatenate, and
        # peak memory stays at what is stored.
        self._frames: np.ndarray | None = None
        self._in_flight: tuple[int, np.ndarray] | None = None  # (buffer position, dones)
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
        frames = np.stack([info.pop(FRAME_KEY) for info in infos])
        stored = resize_uint8(frames, self.frame_size, self.resize_mode)
        self._store(stored)
        rewards = self.locals["rewards"]
        rewards[...] = PLACEHOLDER_REWARD  # in place: this array is what SB3 stores next
        dones = np.asarray(self.locals["dones"], dtype=bool).copy()
        self._in_flight = (int(self.model.replay_buffer.pos), dones)
        return True

    def _on_rollout_end(self) -> None:
        # Called after the rollout's last transition was stored and before train().
        self._commit()
        self.flush()

    def _on_training_end(self) -> None:
        self.flush()

    # -- bookkeeping --------------------------------------------------------------------
    def _store(self, stored: np.ndarray) -> None:
        """Write a step's frames after the committed ones (they count once committed)."""
        n = stored.shape[0]
        if self._frames is None:
            # A flush happens once max_pending_frames are committed, so one step more fits.
            self._frames = np.empty((self.max_pending_frames + n, *stored.shape[1:]), dtype=np.uint8)
        if stored.shape[1:] != self._frames.shape[1:]:
            raise ConfigError(
                f"frames changed shape from {self._frames.shape[1:]} to {stored.shape[1:]} during "
                "training; render every sub-env at one size (or set a storage frame_size)"
            )
        self._frames[self._pending_frames : self._pending_frames + n] = stored

    def _commit(self) -> None:
        if self._in_flight is None:
            return
        self._pending.append(self._in_flight)
        self._pending_frames += self._in_flight[1].shape[0]
        self._in_flight = None
        buffer_size = self.model.replay_buffer.buffer_size
        if self._pending_frames >= self.max_pending_frames or len(self._pending) >= buffer_size:
            self.flush()

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
        frames = self._frames[: self._pending_frames]
        dones = np.stack([d for _, d in self._pending])
        n_steps, n_envs = dones.shape
        rewards = score_frames(self.reward_model, frames).reshape(n_steps, n_envs)
        if self._in_flight is not None:  # a stored step not yet committed moves to the front
            n = self._in_flight[1].shape[0]
            self._frames[:n] = self._frames[self._pending_frames : self._pending_frames + n].copy()
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

