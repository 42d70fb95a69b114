"""``python -m vlmrm.train``: train an SB3 agent on a CLIP reward.

Usage::

    python -m vlmrm.train env=Humanoid goal="kneeling" reward=vit-bigg-14 reward.alpha=0.5 seed=3
    python -m vlmrm.train env=CartPole reward=tiny total_steps=2000        # offline smoke run
    python -m vlmrm.train env=CartPole reward=ground_truth                 # the env's own reward
    python -m vlmrm.train resume=runs/Humanoid-kneeling-20240101-120000    # continue a run

Settings are ``key=value`` overrides of the config tree in ``configs/`` (``train.yaml``
and the groups ``env/``, ``agent/``, ``reward/``), composed with Hydra. A run writes
``<out_dir>/<env>-<goal>-<time>/``: ``config.yaml`` (resolved), ``tb/`` (TensorBoard),
``videos/step_<N>.mp4``, ``checkpoints/`` (agent, replay buffer, ``latest.json``).
Ctrl-C or SIGTERM saves a checkpoint and exits cleanly (status 0); ``resume=<run dir>``
continues from the latest checkpoint with the same step count.

Exit status: 0 done or stopped cleanly, 2 bad configuration, 130 aborted (second Ctrl-C).
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

# torchvision (via vlmrm) must be imported before any MuJoCo EGL context exists.
import torchvision  # noqa: F401, I001
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from vlmrm.agents.builders import (
    OFF_POLICY,
    build_agent,
    build_reward_model,
    check_action_space,
    load_agent,
)
from vlmrm.agents.callbacks import EpisodeStats, EvalVideo, PeriodicCheckpoint, StopOnSignal
from vlmrm.agents.checkpoint import latest_checkpoint, load_replay_buffer, save_checkpoint
from vlmrm.agents.config import compose_train_config, goal_prompt, load_resume_config, torch_threads
from vlmrm.agents.relabel import EpisodeRelabeller, TimedReward
from vlmrm.agents.vec_env import (
    check_env_factory,
    close_quietly,
    env_factory,
    make_training_env,
    render_fps,
)
from vlmrm.errors import ConfigError, WeightsNotFoundError
from vlmrm.runtime.stop import GracefulStop
from vlmrm.wrappers import CLIPRewardVecEnvWrapper

USAGE = __doc__.split("Settings are")[0].strip() + """

Common settings (see configs/train.yaml for all):
  env=Humanoid|CartPole|MountainCar   agent=sac|ppo|dqn   reward=tiny|vit-b-32|vit-l-14|vit-h-14|vit-bigg-14|ground_truth
  goal="..."  baseline="..."  reward.alpha=0.5  seed=0  total_steps=1e6  n_envs=8  subprocess=true
  eval.every=N  eval.episodes=1  checkpoint_every=N  out_dir=runs  run_name=NAME  resume=RUN_DIR  threads=auto
  agent.<sb3 argument>=value (e.g. agent.learning_rate=3e-4)  env.episode_length=100"""


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    run_dir: Path
    steps: int
    interrupted: bool
    signal: str = ""


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "goal"


def _new_run_dir(cfg: DictConfig) -> Path:
    root = Path(cfg.out_dir)
    if cfg.get("run_name"):
        run_dir = root / cfg.run_name
        if (run_dir / "checkpoints").exists():
            raise ConfigError(f"{run_dir} already holds a run; use resume={run_dir} or another run_name")
    else:
        goal = "ground-truth" if cfg.reward.get("model") is None else _slug(cfg.goal)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = root / f"{cfg.env.name}-{goal}-{stamp}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = root / f"{cfg.env.name}-{goal}-{stamp}-{n}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def resolve_config(argv: list[str]) -> DictConfig:
    """The run config for command-line ``key=value`` arguments (new run or ``resume=``)."""
    resume = [a.split("=", 1)[1] for a in argv if a.startswith("resume=")]
    if resume and resume[-1].strip() not in ("", "null", "None"):
        return load_resume_config(resume[-1].strip().strip("'\""), [a for a in argv if not a.startswith("resume=")])
    return compose_train_config([a for a in argv if not a.startswith("resume=")])


def _say(msg: str) -> None:
    print(f"[vlmrm.train] {msg}", file=sys.stderr, flush=True)


def _open_run(cfg: DictConfig, argv: list[str] | None) -> Path:
    run_dir = Path(cfg.resume) if cfg.get("resume") is not None else _new_run_dir(cfg)
    saved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "resume"])
    OmegaConf.save(saved, run_dir / "config.yaml")
    with open(run_dir / "command.txt", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  python -m vlmrm.train {shlex.join(argv or [])}\n")
    return run_dir


def train(cfg: DictConfig, argv: list[str] | None = None, stop: GracefulStop | None = None) -> TrainResult:
    """Run (or resume) one training job described by a resolved, validated config.

    ``stop`` (default: a fresh :class:`GracefulStop`) is what SIGINT/SIGTERM trigger
    while ``learn`` runs; call ``stop.request()`` from a callback to stop programmatically.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads(cfg.get("threads", "auto")))
    try:
        return _train(cfg, argv, stop)
    finally:
        torch.set_num_threads(threads)


def _describe_reward(cfg: DictConfig, goal: str, reward_model) -> str:
    if reward_model is None:
        return "reward: the environment's ground truth"
    return (
        f"reward: {cfg.reward.model} goal={goal!r} baseline={cfg.get('baseline')!r} alpha={cfg.reward.alpha} "
        f"({cfg.reward.relabel} rewards, CLIP on {reward_model.clip.device})"
    )


def _train(cfg: DictConfig, argv: list[str] | None, stop: GracefulStop | None) -> TrainResult:
    resuming = cfg.get("resume") is not None
    ckpt = latest_checkpoint(cfg.resume) if resuming else None
    algo = cfg.agent.algo
    set_random_seed(cfg.seed)

    # Whatever can fail on a bad setting or missing weights runs before the run directory
    # exists: the env (made here, in-process, so that its errors are readable), the
    # algorithm's action-space requirement, the CLIP model, the vector env, the agent.
    factory = env_factory(cfg.env)
    eval_env = check_env_factory(factory)
    venv: VecEnv | None = None
    try:
        check_action_space(algo, eval_env.action_space, cfg.env.id)
        goal = goal_prompt(cfg.env.goal_template, cfg.goal)
        reward_model = build_reward_model(cfg.reward, goal, cfg.get("baseline"))
        timed = TimedReward(reward_model) if reward_model is not None else None
        venv = make_training_env(
            factory, cfg.n_envs, seed=cfg.seed, subprocess=cfg.subprocess, render_frames=timed is not None
        )
        if cfg.reward.relabel == "step":
            venv = CLIPRewardVecEnvWrapper(venv, timed)
        device = "auto" if cfg.device in (None, "auto") else cfg.device
        if resuming:
            model = load_agent(ckpt["model_path"], algo, env=venv, device=device)
            if ckpt.get("replay_buffer_path") and hasattr(model, "replay_buffer"):
                model.replay_buffer = load_replay_buffer(ckpt["replay_buffer_path"], device=model.device)
        else:
            model = build_agent(cfg.agent, venv, seed=cfg.seed, device=device, verbose=cfg.verbose)

        run_dir = _open_run(cfg, argv)
        _say(f"run directory: {run_dir}")
        _say(_describe_reward(cfg, goal, reward_model))
        if resuming:
            _say(f"resuming from {ckpt['model']} at step {model.num_timesteps}")
        outputs = ["tensorboard"] + (["stdout"] if cfg.verbose else [])
        model.set_logger(configure(str(run_dir / "tb"), outputs))
        return _learn(cfg, model, venv, eval_env, run_dir, reward_model, timed, stop or GracefulStop())
    finally:
        if venv is not None:
            close_quietly(venv)
        eval_env.close()


def _learn(cfg, model, venv, eval_env, run_dir: Path, reward_model, timed, stop: GracefulStop) -> TrainResult:
    """The training loop proper: callbacks, ``learn``, and the final evaluation and save."""
    algo = cfg.agent.algo
    stopper = StopOnSignal(stop, total_steps=int(cfg.total_steps) if algo in OFF_POLICY else None)
    stats = EpisodeStats(reward_stats=timed.stats if timed is not None else None)
    relabeller = None
    if cfg.reward.relabel == "episode":
        relabeller = EpisodeRelabeller(
            timed, max_pending_frames=cfg.reward.max_pending_frames, on_episode=stats.add_clip_episode
        )
    evaluator = EvalVideo(
        eval_env,
        every=cfg.eval.every,
        episodes=cfg.eval.episodes,
        video_dir=run_dir / "videos" if cfg.eval.video else None,
        reward_model=reward_model,
        fps=render_fps(eval_env),
        seed=cfg.seed + 10_000,
    )
    checkpointer = PeriodicCheckpoint(run_dir, cfg.checkpoint_every, relabeller)
    callbacks = [c for c in (stopper, relabeller, stats, evaluator, checkpointer) if c is not None]

    remaining = int(cfg.total_steps) - int(model.num_timesteps)
    where = " in subprocesses" if cfg.subprocess and cfg.n_envs > 1 else ""
    _say(
        f"{algo} on {cfg.env.id}, {cfg.n_envs} env{'s' if cfg.n_envs > 1 else ''}{where}: "
        f"{max(remaining, 0)} of {cfg.total_steps} steps to go"
    )
    # Signals stay graceful until the final checkpoint is written: a Ctrl-C during the
    # final evaluation or save is recorded and the save completes; a second one aborts.
    with stop:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=callbacks,
                progress_bar=cfg.progress_bar,
                reset_num_timesteps=cfg.get("resume") is None,
            )
        if stopper.cut_short:
            # learn ended inside on_step: SB3 never stored that step's transition.
            if relabeller is not None:
                relabeller.discard_in_flight()
            if algo in OFF_POLICY:
                model.num_timesteps = max(model.num_timesteps - venv.num_envs, 0)
            else:
                # The unfinished rollout is thrown away; the weights are those of its start.
                model.num_timesteps = stopper.rollout_start_steps
        if relabeller is not None:
            relabeller.flush()
        if not stopper.stopped and cfg.eval.episodes > 0:
            evaluator.evaluate()
        reason = f"interrupted ({stop.name})" if stopper.stopped else "final"
        info = save_checkpoint(model, run_dir, reason=reason)
        _record_run_fps(model)
        model.logger.dump(model.num_timesteps)
        model.logger.close()
    if stopper.stopped:
        _say(
            f"{stop.name}: stopped at step {info['step']}, checkpoint saved; "
            f"continue with: python -m vlmrm.train resume={run_dir}"
        )
    else:
        _say(f"done: {info['step']} steps; checkpoint {run_dir / 'checkpoints' / info['model']}")
    return TrainResult(run_dir, info["step"], stopper.stopped, stop.name if stopper.stopped else "")


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.train`` / ``vlmrm train``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0
    try:
        cfg = resolve_config(argv)
        train(cfg, argv)
    except (ConfigError, WeightsNotFoundError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, WeightsNotFoundError):
            msg += " For an offline smoke run use reward=tiny."
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"aborted: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
