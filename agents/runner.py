"""One training job of ``python -m vlmrm.train``: envs, agent, CLIP reward, callbacks, ``learn``.

:func:`train` takes a composed, validated config (:mod:`vlmrm.agents.config`) and runs or
resumes it. Whatever can fail on a bad setting or missing weights runs before the run
folder exists; then ``learn`` runs under :class:`~vlmrm.runtime.stop.GracefulStop`, so
Ctrl-C or SIGTERM ends it with a checkpoint (a second signal aborts).

A run writes ``<out>/<env>-<goal>-<time>/``: ``config.yaml`` (resolved), ``command.txt``,
``tb/`` (TensorBoard), ``evaluations.jsonl`` (one line per evaluation),
``videos/step_<N>.mp4``, ``checkpoints/step_<N>/`` (agent, replay
buffer, RNG states, manifest; see :mod:`vlmrm.agents.checkpoint`).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# torchvision must be imported before any MuJoCo EGL context exists (see vlmrm.envs).
import torchvision  # noqa: F401, I001
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from vlmrm.agents import builders
from vlmrm.agents.best import BestAgent, check_metric_reported
from vlmrm.agents.builders import (
    OFF_POLICY,
    agent_device,
    build_agent,
    check_action_space,
    check_observation_space,
    load_agent,
)
from vlmrm.agents.callbacks import (
    EpisodeStats,
    EvalVideo,
    PeriodicCheckpoint,
    StopOnSignal,
    relabeller_state,
)
from vlmrm.agents.centring import shifted_reward
from vlmrm.agents.checkpoint import (
    NoCheckpoint,
    latest_checkpoint,
    load_replay_buffer,
    restore_rng_state,
    save_checkpoint,
)
from vlmrm.agents.config import describe_threads, train_threads
from vlmrm.agents.loggers import make_logger
from vlmrm.agents.progress import StepProgress
from vlmrm.agents.relabel import RELABEL_OVERLAP, EpisodeRelabeller, TimedReward, auto_overlap
from vlmrm.agents.settings import goal_prompt
from vlmrm.agents.short_runs import planned_steps
from vlmrm.agents.vec_env import (
    check_env_factory,
    close_quietly,
    env_factory,
    make_training_env,
    render_fps,
)
from vlmrm.distributed import RankLost
from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write_text
from vlmrm.runtime.epilogue import last_word
from vlmrm.runtime.lock import RunLock
from vlmrm.runtime.stop import GracefulStop
from vlmrm.runtime.units import list_units
from vlmrm.wrappers import CLIPRewardVecEnvWrapper


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    run_dir: Path
    steps: int
    interrupted: bool
    signal: str = ""
    final_eval: dict | None = None  # the final evaluation's returns (gt_return, clip_return, ...)


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "goal"


def _first(prompts) -> str:
    """The goal of a run folder's name: the goal, or the first of a list of goals."""
    return prompts if isinstance(prompts, str) else str(list(prompts)[0])


def _new_run_dir(cfg: DictConfig, lock: Callable[[Path], Any]) -> Path:
    """Create the folder of a new run and ``lock`` it before anything is written there.

    The lock comes first and the "already holds a run" check second, so two trainings
    started together with one ``run_name=`` cannot both pass it; a timestamped folder is
    claimed by ``mkdir`` itself (one of two runs of the same second gets ``-2``).
    """
    root = Path(cfg.out)
    try:
        if cfg.get("run_name"):
            run_dir = root / cfg.run_name
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            goal = "ground-truth" if cfg.reward.get("model") is None else _slug(_first(cfg.goal))
            stamp = time.strftime("%Y%m%d-%H%M%S")
            root.mkdir(parents=True, exist_ok=True)
            for n in range(1, 10_000):
                run_dir = root / (f"{cfg.env.name}-{goal}-{stamp}" + (f"-{n}" if n > 1 else ""))
                try:
                    run_dir.mkdir()
                    break
                except FileExistsError:
                    continue
    except OSError as exc:
        raise ConfigError(
            f"out={cfg.out}: cannot create the run folder {run_dir if cfg.get('run_name') else root} "
            f"({exc.strerror or exc}); pass out=<a writable folder>"
        ) from None
    lock(run_dir)
    _refuse_a_finished_run(cfg, run_dir)
    return run_dir


def _refuse_a_finished_run(cfg: DictConfig, run_dir: Path) -> None:
    if cfg.get("resume") is None and (run_dir / "checkpoints").exists():
        raise ConfigError(f"{run_dir} already holds a run; use resume={run_dir} or another run_name")


def _say(msg: str) -> None:
    print(f"[vlmrm.train] {msg}", file=sys.stderr, flush=True)


def kept_and_resume(run_dir: Path) -> str:
    """What a run that ends on a storage error or a lost rank keeps, and how to go on."""
    units = list_units(run_dir / "checkpoints")
    kept = f"the checkpoint of step {units[0][0]} is intact" if units else "no checkpoint was saved yet"
    return f"{kept}; resume with: python -m vlmrm.train resume={run_dir}"


class _RunFolder:
    """The run folder's lock, taken once (early for ``resume=``), held until :func:`train` returns."""

    def __init__(self, held: contextlib.ExitStack, argv: list[str] | None) -> None:
        self.held, self.command = held, f"python -m vlmrm.train {shlex.join(argv or [])}".strip()
        self.path: Path | None = None

    def __call__(self, run_dir: Path) -> None:
        if self.path is None:
            self.held.enter_context(RunLock(run_dir, self.command, kept=lambda: kept_and_resume(run_dir)))
            self.path = run_dir


def _open_run(cfg: DictConfig, argv: list[str] | None, lock: _RunFolder) -> Path:
    if cfg.get("resume") is not None:
        run_dir = Path(cfg.resume)
        lock(run_dir)
    else:
        run_dir = _new_run_dir(cfg, lock)
    saved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "resume"])
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(saved))
    with open(run_dir / "command.txt", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  python -m vlmrm.train {shlex.join(argv or [])}\n")
    return run_dir


def train(
    cfg: DictConfig, argv: list[str] | None = None, stop: GracefulStop | None = None,
    wrap_reward: Callable[[Any], Any] | None = None, on_interrupt: Callable[[], None] | None = None,
) -> TrainResult:
    """Run (or resume) one training job described by a resolved, validated config.

    ``stop`` (default: a fresh :class:`GracefulStop`) is what SIGINT/SIGTERM trigger
    while ``learn`` runs; call ``stop.request()`` from a callback to stop programmatically.
    ``wrap_reward(reward_model)`` replaces the built CLIP reward (multi-rank scoring,
    :mod:`vlmrm.agents.distributed_reward`). ``on_interrupt()`` runs when a signal ends
    the run with ``KeyboardInterrupt``, before it goes on; it may raise
    :class:`~vlmrm.distributed.RankLost` (torchrun stops the survivors of a dead rank with a
    signal, so the signal can be the news of a peer's death), reported with what was kept.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(train_threads(cfg))
    try:
        return _train(cfg, argv, stop, wrap_reward, on_interrupt)
    finally:
        torch.set_num_threads(threads)


def _resume_agent(ckpt, algo: str, venv, device: str):
    """The agent, replay buffer, RNG states and counters of a verified checkpoint."""
    model = load_agent(str(ckpt.agent_path), algo, env=venv, device=device)
    if ckpt.replay_buffer_path is not None and hasattr(model, "replay_buffer"):
        model.replay_buffer = load_replay_buffer(ckpt.replay_buffer_path, device=model.device)
        filled = model.replay_buffer.buffer_size if model.replay_buffer.full else model.replay_buffer.pos
        expected = min(int(model.num_timesteps) // venv.num_envs, model.replay_buffer.buffer_size)
        if filled != expected:
            raise ConfigError(
                f"checkpoints/{ckpt.name}: the replay buffer holds {filled} steps but the agent "
                f"{expected}; the checkpoint is inconsistent — resume from an older one by deleting it"
            )
    state = ckpt.state()
    if "rng" in state:
        restore_rng_state(state["rng"])
    model._episode_num = int(state.get("episode_num", 0))
    return model, state


def _plain(value):
    """A prompt setting as plain Python (a list of prompts prints as a list)."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _describe_reward(cfg: DictConfig, goal: str, reward_model) -> str:
    if reward_model is None:
        return "reward: the environment's ground truth"
    return (
        f"reward: {cfg.reward.model} goal={_plain(goal)!r} baseline={_plain(cfg.get('baseline'))!r} alpha={cfg.reward.alpha} "
        f"({cfg.reward.relabel} rewards, CLIP on {reward_model.clip.device})"
    )


def _train(cfg: DictConfig, argv: list[str] | None, stop: GracefulStop | None, wrap_reward=None,
           on_interrupt: Callable[[], None] | None = None) -> TrainResult:
    with contextlib.ExitStack() as held:
        lock = _RunFolder(held, argv)
        # A folder another process writes is refused before anything loads: resume= at
        # once, and an existing run_name= folder too (a new one is locked when created).
        early = Path(cfg.resume) if cfg.get("resume") is not None else (
            Path(cfg.out) / cfg.run_name if cfg.get("run_name") else None)
        if early is not None and early.is_dir():
            lock(early)
            _refuse_a_finished_run(cfg, early)
        try:
            try:
                return _train_locked(cfg, argv, stop, wrap_reward, lock)
            except KeyboardInterrupt:
                if on_interrupt is not None:
                    on_interrupt()
                raise
        except RankLost as exc:  # a peer rank died: name it, and what this run kept
            raise RankLost(f"{exc}; {kept_and_resume(lock.path)}" if lock.path is not None else str(exc)) from None


def _train_locked(cfg: DictConfig, argv: list[str] | None, stop: GracefulStop | None, wrap_reward,
                  lock: _RunFolder) -> TrainResult:
    resuming = cfg.get("resume") is not None
    ckpt = None
    if resuming:
        try:
            ckpt = latest_checkpoint(cfg.resume, warn=_say)
        except NoCheckpoint as exc:  # killed before its first save completed
            _say(f"{exc}; starting it over from step 0")
            resuming = False
    algo = cfg.agent.algo
    set_random_seed(cfg.seed)

    # Whatever can fail on a bad setting or missing weights runs before the run directory
    # exists: the env (made here, in-process, so that its errors are readable), the
    # algorithm's action-space requirement, the CLIP model, the vector env, the agent.
    factory = env_factory(cfg.env)
    eval_env = check_env_factory(factory)
    venv: VecEnv | None = None
    try:
        check_observation_space(eval_env.observation_space, cfg.env.id)
        check_action_space(algo, eval_env.action_space, cfg.env.id)
        check_metric_reported(cfg.eval.best_metric if cfg.eval.episodes > 0 else None, eval_env)
        device = agent_device(cfg.device)  # before the reward CLIP loads: the same rule as reward.device
        goal = goal_prompt(cfg.env.goal_template, cfg.goal) if cfg.reward.get("model") is not None else None
        reward_model = builders.build_reward_model(cfg.reward, goal, cfg.get("baseline"))
        if wrap_reward is not None and reward_model is not None:
            reward_model = wrap_reward(reward_model)
        reward_model = shifted_reward(cfg.reward, reward_model, factory, cfg.seed, say=_say)
        timed = TimedReward(reward_model) if reward_model is not None else None
        venv = make_training_env(
            factory, cfg.n_envs, seed=cfg.seed, subprocess=cfg.subprocess, render_frames=timed is not None
        )
        if cfg.reward.relabel == "step":
            venv = CLIPRewardVecEnvWrapper(venv, timed)
        if resuming:
            model, resume_state = _resume_agent(ckpt, algo, venv, device)
        else:
            model, resume_state = build_agent(cfg.agent, venv, seed=cfg.seed, device=device, verbose=cfg.verbose), {}

        run_dir = _open_run(cfg, argv, lock)
        _say(f"run directory: {run_dir}")
        _say(_describe_reward(cfg, goal, reward_model))
        if resuming:
            _say(f"resuming from checkpoints/{ckpt.name} at step {model.num_timesteps}")
        model.set_logger(make_logger(cfg, run_dir))
        if cfg.reward.get("center") and reward_model is not None:
            model.logger.record("reward/offset", float(cfg.reward.offset))
        with model.logger:  # closed, and a W&B run finished, however the training ends
            return _learn(cfg, model, venv, eval_env, run_dir, reward_model, timed, stop or GracefulStop(),
                          resume_state)
    finally:
        if venv is not None:
            close_quietly(venv)
        eval_env.close()


def _learn(
    cfg, model, venv, eval_env, run_dir: Path, reward_model, timed, stop: GracefulStop, resume_state: dict
) -> TrainResult:
    """The training loop proper: callbacks, ``learn``, and the final evaluation and save."""
    algo = cfg.agent.algo
    stopper = StopOnSignal(stop, total_steps=int(cfg.total_steps) if algo in OFF_POLICY else None)
    stats = EpisodeStats(reward_stats=timed.stats if timed is not None else None)
    relabeller = None
    horizon = absorbing_horizon(cfg, eval_env)
    if cfg.reward.relabel == "episode":
        relabeller = EpisodeRelabeller(
            timed,
            max_pending_frames=cfg.reward.max_pending_frames,
            on_episode=stats.add_clip_episode,
            absorbing_horizon=horizon,
            # A distributed reward's collectives must come from one thread (evaluations
            # score on the main thread): no worker there; else as reward.relabel_worker says.
            overlap=relabel_overlap(cfg, timed),
        )
        saved = resume_state.get("relabeller") or {}
        relabeller.relabelled = int(saved.get("relabelled", 0))
        relabeller.flushes = int(saved.get("flushes", 0))
    evaluator = EvalVideo(
        eval_env,
        every=cfg.eval.every,
        episodes=cfg.eval.episodes,
        video_dir=run_dir / "videos" if cfg.eval.video else None,
        reward_model=reward_model,
        fps=render_fps(eval_env),
        seed=cfg.seed + 10_000,
        on_eval=BestAgent(run_dir, cfg.eval.best_metric, _say) if cfg.eval.episodes > 0 else None,
        record=run_dir / "evaluations.jsonl",
    )
    keep = int(cfg.get("keep_checkpoints", 0) or 0)
    checkpointer = PeriodicCheckpoint(run_dir, cfg.checkpoint_every, relabeller, keep=keep)
    progress = StepProgress(planned_steps(cfg)) if cfg.progress else None
    callbacks = [c for c in (stopper, relabeller, stats, evaluator, checkpointer, progress) if c is not None]

    remaining = int(cfg.total_steps) - int(model.num_timesteps)
    where = " in subprocesses" if cfg.subprocess and cfg.n_envs > 1 else ""
    _say(
        f"{algo} on {cfg.env.id}, {cfg.n_envs} env{'s' if cfg.n_envs > 1 else ''}{where}: "
        f"{max(remaining, 0)} of {cfg.total_steps} steps to go; {describe_threads(cfg)}"
    )
    # Signals stay graceful until the final checkpoint is written: a Ctrl-C during the
    # final evaluation or save is recorded and the save completes; a second one aborts.
    with stop:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=callbacks,
                progress_bar=False,  # StepProgress: the run's steps, ending at total_steps
                reset_num_timesteps=cfg.get("resume") is None,
            )
        info = _finish(cfg, model, venv, stopper, relabeller, evaluator, run_dir, stop)
    if progress is not None:
        progress.close(info["step"])
    if stopper.stopped:  # (last_word: under torchrun, after the launcher's own lines)
        last_word(
            f"[vlmrm.train] {stop.name}: stopped at step {info['step']}, checkpoint saved; "
            f"continue with: python -m vlmrm.train resume={run_dir}"
        )
    else:
        _say(f"done: {info['step']} steps; checkpoint {run_dir / 'checkpoints' / info['checkpoint']}")
    return TrainResult(run_dir, info["step"], stopper.stopped, stop.name if stopper.stopped else "",
                       info.get("eval"))


def relabel_overlap(cfg: DictConfig, reward_model) -> bool | str:
    """The relabeller's ``overlap`` for ``reward.relabel_worker`` (``auto``: :func:`auto_overlap`,
    for this run's length), said in one line when the reward model gets a process of its own."""
    if cfg.reward.get("distributed", False):
        return False  # a distributed reward's collectives come from one thread (evaluations score there too)
    worker = cfg.reward.get("relabel_worker") or "auto"
    overlap = RELABEL_OVERLAP[worker] if worker != "auto" else auto_overlap(reward_model, cfg.total_steps)
    if overlap == "process" and worker == "auto":
        _say("relabelling: the reward model scores in a process of its own (a small CPU model and an idle core; "
             "reward.relabel_worker=thread|off to keep it in this one)")
    return overlap


def _finish(cfg, model, venv, stopper, relabeller, evaluator, run_dir: Path, stop: GracefulStop) -> dict:
    """After ``learn``: settle a cut-short step, flush rewards, evaluate, save the checkpoint."""
    if stopper.cut_short:
        # learn ended inside on_step: SB3 never stored that step's transition.
        if relabeller is not None:
            relabeller.discard_in_flight()
        if cfg.agent.algo in OFF_POLICY:
            model.num_timesteps = max(model.num_timesteps - venv.num_envs, 0)
        else:
            # The unfinished rollout is thrown away; the weights are those of its start.
            model.num_timesteps = stopper.rollout_start_steps
    if relabeller is not None:
        relabeller.flush()
    summary = evaluator.evaluate(final=True) if not stopper.stopped and cfg.eval.episodes > 0 else None
    reason = f"interrupted ({stop.name})" if stopper.stopped else "final"
    info = save_checkpoint(
        model, run_dir, reason=reason, keep=int(cfg.get("keep_checkpoints", 0) or 0),
        extra_state=relabeller_state(relabeller),
    )
    if summary is not None:
        _say(f"final evaluation: ground-truth return {summary.gt_return:.4g}"
             + ("" if summary.clip_return is None else f", CLIP return {summary.clip_return:.4g}"))
        info = {**info, "eval": {"gt_return": summary.gt_return, "clip_return": summary.clip_return,
                                 "success_rate": summary.success_rate}}
    _record_run_fps(model)
    model.logger.dump(model.num_timesteps)
    model.logger.close()
    return info


def absorbing_horizon(cfg: DictConfig, env) -> int | None:
    """The time limit up to which a terminal state keeps paying (``reward.terminal=absorbing``)."""
    if cfg.reward.get("terminal", "end") != "absorbing":
        return None
    if cfg.reward.relabel != "episode":
        _say(f"note: reward.terminal=absorbing rewrites replay-buffer rewards; {cfg.agent.algo} scores "
             "every step, so a terminated episode earns nothing more (reward.terminal=end)")
        return None
    limit = cfg.env.get("episode_length") or getattr(getattr(env, "spec", None), "max_episode_steps", None)
    if not limit:
        raise ConfigError(
            f"reward.terminal=absorbing pays a terminal state until the time limit, but {cfg.env.id} "
            "has none; set env.episode_length=<steps>"
        )
    return int(limit)


def _record_run_fps(model) -> None:
    """Record ``time/fps`` for this ``learn`` call at its last step.

    SB3 logs throughput only every ``log_interval`` episodes (off-policy) or rollouts, so a
    short or resumed run could end with no point after its last dump; the final dump then
    always has one, at the step the checkpoint was taken.
    """
    start = getattr(model, "start_time", None)
    done = int(model.num_timesteps) - int(getattr(model, "_num_timesteps_at_start", 0))
    if start is None or done <= 0:
        return
    elapsed = max((time.time_ns() - start) / 1e9, sys.float_info.epsilon)
    model.logger.record("time/fps", int(done / elapsed))
