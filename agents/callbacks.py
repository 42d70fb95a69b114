"""SB3 callbacks of a training run: stop on signal, episode statistics, evaluation videos,
checkpoints.

All follow SB3's one callback lifecycle (``on_training_start`` → per rollout
``on_rollout_start`` / ``on_step`` / ``on_rollout_end`` → ``on_training_end``). Periodic
work (evaluation, checkpoints) fires when ``num_timesteps`` crosses a multiple of its
period, so a resumed run keeps the same schedule as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from vlmrm.agents.checkpoint import save_checkpoint
from vlmrm.agents.relabel import EpisodeRelabeller, RewardStats
from vlmrm.agents.rollout import run_episodes
from vlmrm.runtime.atomic import append_jsonl, atomic_write
from vlmrm.runtime.stop import GracefulStop
from vlmrm.video import write_video


def _crossed(previous: int, now: int, every: int) -> bool:
    return every > 0 and now // every > previous // every


class _Periodic(BaseCallback):
    """A callback that acts every ``every`` env steps, counted from the step its training
    started at (a resumed run keeps its schedule)."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = int(every)
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _due(self) -> bool:
        """Whether a multiple of ``every`` was crossed since the last action (now marked done)."""
        now = self.model.num_timesteps
        if not _crossed(self._last, now, self.every):
            return False
        self._last = now
        return True


class StopOnSignal(BaseCallback):
    """End ``learn`` at the next step after SIGINT/SIGTERM, or exactly at ``total_steps``.

    SB3's off-policy loop only checks its step budget between rollouts, so a rollout of
    ``train_freq × n_envs`` steps can overshoot ``total_steps`` by up to a whole rollout
    (800 Humanoid steps with the paper's settings). With ``total_steps`` given, the step
    that reaches it is stored as usual and the next one ends ``learn``; that extra step
    is never stored (SB3 returns before writing it), like the step during which a signal
    is noticed. ``cut_short`` says that this happened: the trainer then subtracts that
    unstored step from ``num_timesteps``. Leave ``total_steps`` unset for on-policy
    agents, whose unfinished rollout would be thrown away.

    ``rollout_start_steps`` is ``num_timesteps`` when the current rollout began (an
    on-policy agent stopped by a signal loses its unfinished rollout, so that is its
    step count at the stop).
    """

    def __init__(self, stop: GracefulStop, total_steps: int | None = None) -> None:
        super().__init__()
        self.stop = stop
        self.total_steps = total_steps
        self.stopped = False  # by a signal
        self.cut_short = False  # learn ended from on_step (the current step was not stored)
        self.rollout_start_steps = 0
        self._reached = False

    def _on_training_start(self) -> None:
        self.rollout_start_steps = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        self.rollout_start_steps = self.model.num_timesteps

    def _on_step(self) -> bool:
        if self.stop.requested:
            self.stopped = self.cut_short = True
            return False
        if self._reached:
            self.cut_short = True
            return False
        if self.total_steps is not None and self.model.num_timesteps >= self.total_steps:
            self._reached = True
        return True


class EpisodeStats(BaseCallback):
    """Log ground-truth and CLIP returns, success rate and reward-model throughput.

    TensorBoard keys (means over the last ``window`` episodes): ``rollout/gt_return``,
    ``rollout/clip_return``, ``rollout/ep_length``, ``rollout/success_rate`` (the env's
    ``info["success"]`` at the episode's last step, where defined); and
    ``reward/frames_per_second`` (CLIP throughput) and ``reward/time_fraction`` (share of
    wall time spent in the reward model). SB3 adds ``time/fps`` (env steps per second).

    CLIP returns come from ``info["clip_episode"]`` (online rewards) or from
    :meth:`add_clip_episode` (episode relabelling, called when episodes are relabelled).
    """

    def __init__(self, window: int = 100, reward_stats: RewardStats | None = None) -> None:
        super().__init__()
        self.gt_returns: deque[float] = deque(maxlen=window)
        self.clip_returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.successes: deque[float] = deque(maxlen=window)
        self.reward_stats = reward_stats
        self._start = time.perf_counter()
        self.episodes = 0

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()

    def add_clip_episode(self, env_index: int, clip_return: float, length: int) -> None:
        self.clip_returns.append(clip_return)
        if self.logger is not None:
            self.logger.record("rollout/clip_return", float(np.mean(self.clip_returns)))

    def _on_step(self) -> bool:
        dones = self.locals.get("dones")
        infos = self.locals.get("infos")
        if dones is None or infos is None:
            return True
        for i in np.flatnonzero(dones):
            info = infos[i]
            self.episodes += 1
            episode = info.get("episode")
            if episode is not None:
                self.gt_returns.append(float(episode["r"]))
                self.lengths.append(int(episode["l"]))
            if "success" in info:
                self.successes.append(float(bool(info["success"])))
            clip_episode = info.get("clip_episode")
            if clip_episode is not None:
                self.clip_returns.append(float(clip_episode["r"]))
        if dones.any():
            self._record()
        return True

    def _record(self) -> None:
        for key, values in (
            ("rollout/gt_return", self.gt_returns),
            ("rollout/clip_return", self.clip_returns),
            ("rollout/ep_length", self.lengths),
            ("rollout/success_rate", self.successes),
        ):
            if values:
                self.logger.record(key, float(np.mean(values)))

    def _on_rollout_end(self) -> None:
        stats = self.reward_stats
        if stats is not None and stats.frames:
            wall = max(time.perf_counter() - self._start, 1e-9)
            self.logger.record("reward/frames_per_second", stats.frames_per_second)
            self.logger.record("reward/time_fraction", stats.seconds / wall)
            self.logger.record("reward/frames", stats.frames)


class EvalVideo(_Periodic):
    """Every ``every`` env steps: deterministic episodes on ``env``, an mp4, eval metrics.

    Writes ``<video_dir>/step_<N>.mp4`` and logs ``eval/gt_return``, ``eval/clip_return``,
    ``eval/success_rate`` and ``eval/ep_length``; ``on_eval(model, summary)`` follows each
    evaluation (the run's best agent, :mod:`vlmrm.agents.best`).

    With ``record`` (the run's ``evaluations.jsonl``) each evaluation also appends one JSON
    line, on disk before the next step: ``step``, ``gt_return``, ``clip_return``,
    ``success_rate``, ``ep_length``, ``episodes``, ``time`` (Unix) and ``final`` (the
    evaluation after ``learn``). TensorBoard's event files are buffered and awkward to read
    while a run is alive; this file is what a study of many runs reads
    (:mod:`vlmrm.study`). A resumed run may append a step again; readers keep the last.
    """

    def __init__(
        self,
        env: gym.Env,
        *,
        every: int,
        episodes: int = 1,
        video_dir: str | Path | None = None,
        reward_model: Callable | None = None,
        fps: float = 30.0,
        seed: int | None = None,
        on_eval: Callable | None = None,
        record: str | Path | None = None,
    ) -> None:
        super().__init__(every)
        self.on_eval = on_eval  # on_eval(model, summary) after each evaluation (e.g. agents.best.BestAgent)
        self.env = env
        self.n_episodes = int(episodes)
        self.video_dir = Path(video_dir) if video_dir is not None else None
        self.reward_model = reward_model
        self.fps = fps
        self.seed = seed
        self.record = Path(record) if record is not None else None
        self.videos: list[Path] = []

    def _on_step(self) -> bool:
        if self.n_episodes > 0 and self._due():
            self.evaluate()
        return True

    def evaluate(self, final: bool = False):
        """Run the evaluation now; returns the :class:`~vlmrm.agents.rollout.EvalSummary`.

        ``final`` marks the record of the evaluation that ends a run.
        """
        step = int(self.model.num_timesteps)
        summary = run_episodes(
            self.model,
            self.env,
            self.n_episodes,
            deterministic=True,
            reward_model=self.reward_model,
            keep_frames=self.video_dir is not None,
            seed=None if self.seed is None else self.seed + step,
        )
        if self.video_dir is not None:
            frames = [f for ep in summary.episodes for f in ep.frames]
            if frames:
                path = self.video_dir / f"step_{step:09d}.mp4"
                self.videos.append(atomic_write(path, lambda tmp: write_video(tmp, frames, fps=self.fps)))
        for key, value in (
            ("eval/gt_return", summary.gt_return),
            ("eval/clip_return", summary.clip_return),
            ("eval/success_rate", summary.success_rate),
            ("eval/ep_length", summary.length),
        ):
            if value is not None:
                self.logger.record(key, value)
        self.logger.dump(step)
        if self.record is not None:
            append_jsonl(self.record, {
                "step": step, "gt_return": summary.gt_return, "clip_return": summary.clip_return,
                "success_rate": summary.success_rate, "ep_length": summary.length,
                "episodes": len(summary.episodes), "time": time.time(), "final": bool(final),
            })
        if self.on_eval is not None:
            self.on_eval(self.model, summary)
        return summary


def relabeller_state(relabeller: EpisodeRelabeller | None) -> dict:
    """What a checkpoint keeps of the relabeller (flushed first, so nothing is pending)."""
    if relabeller is None:
        return {}
    return {"relabeller": {"relabelled": int(relabeller.relabelled), "flushes": int(relabeller.flushes)}}


class PeriodicCheckpoint(_Periodic):
    """Save a checkpoint every ``every`` env steps, at the start of a rollout; keep ``keep``.

    At a rollout's start every collected transition is stored, relabelled and trained
    on, so the saved agent, buffer and step count agree.
    """

    def __init__(
        self, run_dir: str | Path, every: int, relabeller: EpisodeRelabeller | None = None, keep: int = 0
    ) -> None:
        super().__init__(every)
        self.run_dir = Path(run_dir)
        self.keep = int(keep)
        self.relabeller = relabeller
        self.saved: list[dict] = []

    def _on_rollout_start(self) -> None:
        if self._due():
            if self.relabeller is not None:
                self.relabeller.flush()
            self.saved.append(
                save_checkpoint(
                    self.model, self.run_dir, reason="periodic", keep=self.keep,
                    extra_state=relabeller_state(self.relabeller),
                )
            )

    def _on_step(self) -> bool:
        return True
