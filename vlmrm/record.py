"""``python -m vlmrm.record``: roll out an env, record it with its ground truth, and score it.

Checking a CLIP reward before training means asking: on real rollouts of this env, does
the reward go up when the task is done? This command answers it in one go::

    python -m vlmrm.record env=CartPole episodes=3 policy=random out=rec/ \\
        goal="a pole standing upright" baseline="a pole" model=ViT-B-32/openai alpha=[0,0.5,1]
    python -m vlmrm.record env=Humanoid policy=runs/sac.zip episodes=2 out=rec/

It writes ``out/videos/episode_NNN.mp4`` (one per episode, the frame of the state reached
by each step, so frame *i* pairs with the reward of step *i*), ``out/labels.csv`` (one row
per frame: ``video, frame, time, episode, step, env_reward, terminated, truncated`` and
every scalar entry of the step's ``info``, e.g. ``success``), then runs the scoring of
:mod:`vlmrm.score` on the videos with ``labels=out/labels.csv``: reward CSV, plots,
summary, and correlations/ROC-AUC/EPIC distance of the CLIP reward against the env's own
reward and success flags. Sweep ``goal``, ``baseline`` and ``alpha`` by passing lists, or
re-score the recorded videos later with ``python -m vlmrm.score``.

``policy`` is ``random`` (seeded ``action_space.sample()``) or a Stable-Baselines3 ``.zip``
(algorithm detected from the file, or ``algo=PPO|SAC|TD3|A2C|DQN|DDPG``). Without a goal
the env's defaults are used when it has them (``vlmrm.envs.ENV_DEFAULTS``); otherwise the
rollouts are only recorded.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torchvision  # noqa: F401, I001 - before any MuJoCo GL context (see vlmrm.envs)

from vlmrm.errors import ConfigError, VLMRMError
from vlmrm.score import DEFAULT_MODEL, ScoreConfig, _help_text, parse_args
from vlmrm.score import run as run_scoring

SB3_ALGOS = ("PPO", "SAC", "TD3", "A2C", "DQN", "DDPG")
_RESERVED = ("video", "frame", "time", "episode", "step", "env_reward", "terminated", "truncated")


@dataclass
class RecordConfig:
    """Settings of ``python -m vlmrm.record`` (each is a ``key=value`` on the command line)."""

    env: str | None = None
    episodes: int = 1
    policy: str = "random"
    algo: str = "auto"
    deterministic: bool = True
    seed: int = 0
    max_steps: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    out: str = "record"
    goal: Any = None
    baseline: Any = None
    model: str = DEFAULT_MODEL
    pretrained: str | None = None
    device: str | None = None
    precision: str = "auto"
    alpha: Any = 0.0
    batch_size: int | None = None
    format: str = "csv"
    plot: bool = True
    video_out: bool = False
    label_column: Any = None
    progress: bool = True
    compile: Any = False


HELP = {
    "env": "env short name (CartPole, MountainCar, Humanoid) or gymnasium id, e.g. CartPole-v1 (required)",
    "episodes": "number of episodes to record (one mp4 each)",
    "policy": "'random' or a Stable-Baselines3 checkpoint .zip",
    "algo": f"SB3 algorithm of the checkpoint: auto or one of {', '.join(SB3_ALGOS)}",
    "deterministic": "deterministic actions from the checkpoint policy",
    "seed": "seed of the first episode (episode k uses seed + k)",
    "max_steps": "steps per episode (default: the env's time limit, else 1000)",
    "width": "frame width, for envs that take it",
    "height": "frame height, for envs that take it",
    "fps": "video frame rate (default: the env's render_fps, else 30)",
    "out": "output folder (videos/, labels.csv, scores)",
    "goal": "goal prompt(s) to score; default the env's own if it has one; none: record only",
    "baseline": "baseline prompt(s)",
    "model": "CLIP model (see python -m vlmrm.score --help)",
    "alpha": "alpha or list of alphas",
    "compile": "torch.compile the image tower (see python -m vlmrm.score --help)",
    "label_column": "ground-truth columns to compare with (default: env_reward and all numeric info entries)",
}

USAGE = (
    "usage: python -m vlmrm.record env=NAME key=value ...\n"
    "  e.g. python -m vlmrm.record env=CartPole-v1 episodes=2 policy=random out=rec/ "
    "goal='a pole standing upright' baseline='a pole' alpha=[0,1]"
)


def make_recording_env(cfg: RecordConfig):
    """The env rendering RGB frames, by short name or gymnasium id; :class:`ConfigError` if unknown."""
    import gymnasium as gym

    if not cfg.env:
        raise ConfigError("env is required, e.g. env=CartPole-v1 or env=Humanoid")
    try:
        from vlmrm.envs import make_env
    except ImportError:  # the env package is optional for plain gymnasium ids
        make_env = None
    kwargs = {k: v for k, v in (("width", cfg.width), ("height", cfg.height)) if v is not None}
    try:
        if make_env is not None:
            return make_env(cfg.env, episode_length=cfg.max_steps, **kwargs)
        extra = {} if cfg.max_steps is None else {"max_episode_steps": cfg.max_steps}
        return gym.make(cfg.env, render_mode="rgb_array", **extra, **kwargs)
    except (gym.error.Error, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot make env {cfg.env!r}: {str(exc).splitlines()[0]}") from None


def _detect_algo(path: Path) -> str:
    """Guess the SB3 algorithm of a checkpoint from its saved ``data`` (policy module, hyperparameters)."""
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ConfigError(
            f"{str(path)!r} is not a Stable-Baselines3 checkpoint (.zip from model.save): {exc}"
        ) from None
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    for algo in ("sac", "td3", "dqn", "ddpg"):
        if f".{algo}." in module:
            return algo.upper()
    if "clip_range" in data or "n_epochs" in data:
        return "PPO"
    if "use_rms_prop" in data or "normalize_advantage" in data:
        return "A2C"
    raise ConfigError(
        f"cannot tell which SB3 algorithm saved {str(path)!r}; pass algo=one of {SB3_ALGOS}"
    )


def load_policy(cfg: RecordConfig, env):
    """``obs → action``: seeded random actions, or an SB3 checkpoint's ``predict``."""
    if cfg.policy == "random":
        env.action_space.seed(cfg.seed)
        return lambda obs: env.action_space.sample()
    path = Path(cfg.policy)
    if not path.is_file():
        raise ConfigError(
            f"policy {cfg.policy!r} is neither 'random' nor an existing SB3 .zip checkpoint"
        )
    algo = _detect_algo(path) if cfg.algo == "auto" else cfg.algo.upper()
    if algo not in SB3_ALGOS:
        raise ConfigError(f"algo must be auto or one of {SB3_ALGOS}, got {cfg.algo!r}")
    import stable_baselines3

    cls = getattr(stable_baselines3, algo)
    try:
        model = cls.load(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SB3 raises many kinds; one clear line
        raise ConfigError(
            f"cannot load {str(path)!r} as an SB3 {algo} checkpoint: {str(exc).splitlines()[0][:200]}; try algo=..."
        ) from None
    if model.observation_space.shape != env.observation_space.shape:
        raise ConfigError(
            f"the checkpoint expects observations of shape {model.observation_space.shape} but env "
            f"{cfg.env!r} gives {env.observation_space.shape}; record with the env it was trained on"
        )
    return lambda obs: model.predict(obs, deterministic=cfg.deterministic)[0]


def _scalar_info(info: dict) -> dict[str, float]:
    out = {}
    for k, v in info.items():
        if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)) or (
            isinstance(v, np.ndarray) and v.size == 1 and v.dtype != object
        ):
            key = f"info_{k}" if k in _RESERVED else str(k)
            out[key] = float(np.asarray(v).reshape(-1)[0])
    return out


def record(cfg: RecordConfig, console: Any = None) -> tuple[list[str], Path]:
    """Roll out ``cfg.episodes`` episodes, writing one mp4 each and ``labels.csv``; return (videos, labels path)."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from vlmrm.video import VideoWriter
    from vlmrm.wrappers import check_frame

    console = console or Console()
    if cfg.episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {cfg.episodes}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {cfg.max_steps}")
    env = make_recording_env(cfg)
    try:
        policy = load_policy(cfg, env)
        limit = cfg.max_steps or getattr(env.spec, "max_episode_steps", None) or 1000
        fps = float(cfg.fps or env.metadata.get("render_fps") or 30)
        out = Path(cfg.out)
        (out / "videos").mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        videos = []
        table = Table(title=f"recorded {cfg.env}", title_justify="left")
        for col in ("episode", "video", "steps", "env return", "end"):
            table.add_column(col, justify="right" if col in ("steps", "env return") else "left")
        for ep in range(cfg.episodes):
            name = f"episode_{ep:03d}.mp4"
            path = out / "videos" / name
            obs, _ = env.reset(seed=cfg.seed + ep)
            ret, end = 0.0, "max_steps"
            with VideoWriter(path, fps=fps) as writer:
                for t in range(limit):
                    try:
                        action = policy(obs)
                        obs, r, terminated, truncated, info = env.step(action)
                    except VLMRMError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - e.g. a checkpoint for another action space
                        raise ConfigError(
                            f"stepping {cfg.env!r} with policy {cfg.policy!r} failed: {type(exc).__name__}: {exc}"
                        ) from None
                    writer.write(check_frame(env.render()))
                    ret += float(r)
                    rows.append(
                        {
                            "video": name,
                            "frame": t,
                            "time": t / fps,
                            "episode": ep,
                            "step": t + 1,
                            "env_reward": float(r),
                            "terminated": bool(terminated),
                            "truncated": bool(truncated),
                            **_scalar_info(info),
                        }
                    )
                    if terminated or truncated:
                        end = "terminated" if terminated else "truncated"
                        break
            videos.append(str(path))
            table.add_row(*(Text(c) for c in (str(ep), str(path), str(t + 1), f"{ret:.3f}", end)))
        labels_path = out / "labels.csv"
        pd.DataFrame(rows).to_csv(labels_path, index=False)
    finally:
        env.close()
    console.print(table)
    return videos, labels_path


def _default_prompts(env_name: str) -> tuple[str | None, str | None]:
    try:
        from vlmrm.envs import get_env_defaults

        d = get_env_defaults(env_name)
    except Exception:  # noqa: BLE001 - no defaults for plain gymnasium ids
        return None, None
    return d.goal_template.format(goal=d.goal), d.baseline


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.record``; returns the exit status (2: bad configuration)."""
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(_help_text(RecordConfig, USAGE, HELP))
        return 0
    console = Console()
    try:
        cfg = parse_args(argv, RecordConfig, positional=None)
        goal, baseline = cfg.goal, cfg.baseline
        if goal is None:
            goal, default_base = _default_prompts(cfg.env or "")
            if goal is not None:
                baseline = baseline if baseline is not None else default_base
                console.print(
                    f"goal (env default): {goal!r}, baseline: {baseline!r}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
        videos, labels = record(cfg, console)
        if goal is None:
            console.print(
                f"recorded {len(videos)} episode(s) and {labels}; no goal given, so nothing scored. Score with:\n"
                f"  python -m vlmrm.score videos=[{','.join(videos)}] goal='...' labels={labels}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            return 0
        score_cfg = ScoreConfig(
            videos=videos,
            goal=goal,
            baseline=baseline,
            model=cfg.model,
            pretrained=cfg.pretrained,
            device=cfg.device,
            precision=cfg.precision,
            alpha=cfg.alpha,
            batch_size=cfg.batch_size,
            out=cfg.out,
            format=cfg.format,
            plot=cfg.plot,
            video_out=cfg.video_out,
            labels=str(labels),
            label_column=cfg.label_column,
            progress=cfg.progress,
            compile=cfg.compile,
        )
        result = run_scoring(score_cfg, console=console)
    except VLMRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
