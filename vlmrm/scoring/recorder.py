"""Running ``python -m vlmrm.record``: roll out an env into videos and a labels table, then score them.

The episodes go through :func:`vlmrm.rollout.iter_steps` (the one rollout loop); each
step's rendered frame pairs with that step's env reward and ``info``, so frame *i* of
``episode_NNN.mp4`` is row *i* of the episode in ``labels.csv``. Videos and labels are
written atomically: a killed recording leaves no half-written file.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torchvision  # noqa: F401, I001 - before any MuJoCo GL context (see vlmrm.envs)

from vlmrm.errors import ConfigError, VLMRMError
from vlmrm.runtime.atomic import atomic_write
from vlmrm.runtime.console import make_console
from vlmrm.scoring.settings import SB3_ALGOS, RecordSettings, ScoreSettings

_RESERVED = ("video", "frame", "time", "episode", "step", "env_reward", "terminated", "truncated")


def make_recording_env(cfg: RecordSettings) -> Any:
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


def detect_algo(path: Path) -> str:
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


def load_policy(cfg: RecordSettings, env: Any) -> Any:
    """``policy(obs, info) → action``: seeded random actions, or an SB3 checkpoint's ``predict``."""
    if cfg.policy == "random":
        env.action_space.seed(cfg.seed)
        return lambda obs, info: env.action_space.sample()
    path = Path(cfg.policy)
    if not path.is_file():
        raise ConfigError(
            f"policy {cfg.policy!r} is neither 'random' nor an existing SB3 .zip checkpoint"
        )
    algo = detect_algo(path) if cfg.algo == "auto" else cfg.algo.upper()
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
    return lambda obs, info: model.predict(obs, deterministic=cfg.deterministic)[0]


def _scalar_info(info: dict) -> dict[str, float]:
    out = {}
    for k, v in info.items():
        if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)) or (
            isinstance(v, np.ndarray) and v.size == 1 and v.dtype != object
        ):
            key = f"info_{k}" if k in _RESERVED else str(k)
            out[key] = float(np.asarray(v).reshape(-1)[0])
    return out


def _guarded(steps: Iterator[Any], cfg: RecordSettings) -> Iterator[Any]:
    """The rollout's steps; a policy or env failure becomes one :class:`ConfigError` line."""
    while True:
        try:
            step = next(steps)
        except StopIteration:
            return
        except VLMRMError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. a checkpoint for another action space
            raise ConfigError(
                f"stepping {cfg.env!r} with policy {cfg.policy!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        yield step


class _Episode:
    """One episode being recorded: its video file, its label rows, how it ended."""

    def __init__(self, number: int, folder: Path, fps: float) -> None:
        self.number, self.fps = number, fps
        self.name = f"episode_{number:03d}.mp4"
        self.path = folder / self.name
        self.rows: list[dict[str, Any]] = []
        self.ret, self.end, self.steps = 0.0, "max_steps", 0

    def write(self, tmp: Path, steps: Iterator[Any]) -> None:
        """Stream the episode's steps into the video at ``tmp``, collecting its label rows."""
        from vlmrm.video import VideoWriter
        from vlmrm.wrappers import check_frame

        with VideoWriter(tmp, fps=self.fps) as writer:
            for step in steps:
                if step.is_reset:
                    continue
                writer.write(check_frame(step.frame))
                self._add(step)

    def _add(self, step: Any) -> None:
        self.ret += step.reward
        self.steps = step.t
        t = step.t - 1  # frame index: the state reached by step t
        self.rows.append(
            {
                "video": self.name,
                "frame": t,
                "time": t / self.fps,
                "episode": self.number,
                "step": step.t,
                "env_reward": step.reward,
                "terminated": step.terminated,
                "truncated": step.truncated,
                **_scalar_info(step.info),
            }
        )
        if step.done:
            self.end = "terminated" if step.terminated else "truncated"


def _record_episodes(cfg: RecordSettings, env: Any, out: Path, fps: float) -> list[_Episode]:
    """Every episode through the one rollout loop, each streamed into its own mp4."""
    from itertools import groupby

    from vlmrm.rollout import iter_steps

    limit = cfg.max_steps or getattr(env.spec, "max_episode_steps", None) or 1000
    policy = load_policy(cfg, env)
    rollout = iter_steps(
        env, policy, cfg.episodes, seed=cfg.seed, max_steps=limit, render=lambda ep, t, done: t > 0
    )
    episodes: list[_Episode] = []
    for number, steps in groupby(_guarded(rollout, cfg), key=lambda step: step.episode):
        episode = _Episode(number, out / "videos", fps)
        atomic_write(episode.path, lambda tmp, e=episode, s=steps: e.write(tmp, s))
        episodes.append(episode)
    return episodes


def _episode_table(cfg: RecordSettings, episodes: list[_Episode]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"recorded {cfg.env}", title_justify="left")
    for col in ("episode", "video", "steps", "env return", "end"):
        table.add_column(col, justify="right" if col in ("steps", "env return") else "left")
    for e in episodes:
        cells = (str(e.number), str(e.path), str(e.steps), f"{e.ret:.3f}", e.end)
        table.add_row(*(Text(c) for c in cells))
    return table


def record(cfg: RecordSettings, console: Any = None) -> tuple[list[str], Path]:
    """Roll out ``cfg.episodes`` episodes, writing one mp4 each and ``labels.csv``; return (videos, labels path)."""
    import pandas as pd

    console = console or make_console()
    env = make_recording_env(cfg)
    try:
        fps = float(cfg.fps or env.metadata.get("render_fps") or 30)
        out = Path(cfg.out)
        (out / "videos").mkdir(parents=True, exist_ok=True)
        episodes = _record_episodes(cfg, env, out, fps)
        rows = [row for e in episodes for row in e.rows]
        labels_path = atomic_write(
            out / "labels.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False)
        )
    finally:
        env.close()
    console.print(_episode_table(cfg, episodes))
    return [str(e.path) for e in episodes], labels_path


def default_prompts(env_name: str) -> tuple[str | None, str | None]:
    """The env's own goal and baseline (:data:`vlmrm.envs.ENV_DEFAULTS`), or ``(None, None)``."""
    try:
        from vlmrm.envs import get_env_defaults

        d = get_env_defaults(env_name)
    except Exception:  # noqa: BLE001 - no defaults for plain gymnasium ids
        return None, None
    return d.goal_template.format(goal=d.goal), d.baseline


def _say(console: Any, text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def run_record(cfg: RecordSettings, console: Any = None) -> int:
    """Record, then score the videos against their labels; the exit status (0, or 1: some failed)."""

    from vlmrm.scoring.runner import load_scoring_clip
    from vlmrm.scoring.runner import run as run_scoring

    console = console or make_console()
    goal, baseline = cfg.goal, cfg.baseline
    if goal is None:
        goal, default_base = default_prompts(cfg.env or "")
        if goal is not None:
            baseline = baseline if baseline is not None else default_base
            _say(console, f"goal (env default): {goal!r}, baseline: {baseline!r}")
    values = {**cfg.scoring_values(), "goal": goal, "baseline": baseline}
    # the CLIP first: a missing model fails before any episode is rolled out and written
    clip = load_scoring_clip(ScoreSettings(**values, videos=[])) if goal is not None else None
    videos, labels = record(cfg, console)
    if goal is None:
        _say(
            console,
            f"recorded {len(videos)} episode(s) and {labels}; no goal given, so nothing scored. Score with:\n"
            f"  python -m vlmrm.score videos=[{','.join(videos)}] goal='...' labels={labels}",
        )
        return 0
    settings = ScoreSettings(**values, videos=videos, labels=str(labels))
    settings.validate()
    return run_scoring(settings, console=console, clip=clip).exit_code
