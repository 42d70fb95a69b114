"""Settings of ``python -m vlmrm.score`` and ``python -m vlmrm.record`` (torch-free).

Both commands score videos the same way, so the scoring keys (prompts, α, outputs, the
CLIP) are declared once, in :class:`ScoringSettings`; :class:`ScoreSettings` adds where
the videos come from, :class:`RecordSettings` how to roll out the env that makes them.
Everything here is checked without importing torch, so ``--help`` and a bad setting
answer at once; what needs the model (prompts that embed to the same point) is checked
when the run starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vlmrm.checks import (
    check_alphas,
    check_choice,
    check_int,
    check_optional_int,
    check_out_dir,
    check_text,
    resolve_compile,
)
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32/openai"
FORMATS = ("csv", "json")
REPORTS = ("terminal", "html")
SB3_ALGOS = ("PPO", "SAC", "TD3", "A2C", "DQN", "DDPG")


def check_prompt_value(value: Any, key: str, required: bool) -> Any:
    """A prompt, a list of prompts, or a list holding lists of prompts (averaged); ``None`` if optional."""
    if value is None:
        if required:
            raise ConfigError(f"{key} is required, e.g. {key}='a humanoid robot kneeling'")
        return None
    if isinstance(value, dict):
        raise ConfigError(
            f"{key} was read as a mapping ({value!r}); quote prompts that contain ': ', e.g. {key}='...'"
        )
    if isinstance(value, str):
        return check_text(key, value)
    if not isinstance(value, list):
        raise ConfigError(
            f"{key} must be text or a list of texts, got {value!r}; quote it: {key}='...'"
        )
    if not value:
        raise ConfigError(f"{key} is an empty list; give at least one prompt, e.g. {key}='[a pole standing upright]'")
    for v in value:
        if isinstance(v, list):
            if not v or not all(isinstance(x, str) and x.strip() for x in v):
                raise ConfigError(
                    f"{key}: each averaged prompt list [[p1,p2]] needs non-empty text prompts, got {v!r} in {value!r}"
                )
        elif not isinstance(v, str):
            raise ConfigError(f"{key} prompts must be text, got {v!r}; quote it: {key}='...'")
        else:
            check_text(f"{key} prompts", v)
    return value


def check_videos(value: Any) -> list[str]:
    """The video paths: at least one, every one a non-empty string."""
    if value is None or value == []:
        raise ConfigError(
            "no videos given; pass paths (python -m vlmrm.score a.mp4 goal=...) or videos=[a.mp4,b.mp4]"
        )
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"videos must be paths, got {value!r}")
    return list(items)


@dataclass
class ScoringSettings(ClipSettings, RunSettings):
    """What to score and what to write: the keys ``score`` and ``record`` share."""

    model: str = DEFAULT_MODEL
    """The CLIP: ARCH/TAG (an open_clip pretrained tag), ARCH with pretrained=FILE_OR_TAG,
    hf-hub:org/repo, or vlmrm-tiny."""
    batch_size: int | None = None
    """Frames per batch (memory ~ one batch)."""
    progress: bool = True
    """Show a progress bar over frames."""
    goal: Any = None
    """Goal prompt; a list scores several goals; [[p1,p2]] averages prompts."""
    baseline: Any = None
    """Baseline prompt (the scene without the goal); a list sweeps several; needed for
    alpha > 0."""
    alpha: Any = 0.0
    """Goal-baseline regularisation in [0, 1]; a list [0,0.5,1] costs one encoding pass."""
    format: str = "csv"
    """csv or json."""
    plot: bool = True
    """Write <video>.png reward plots."""
    video_out: bool = False
    """Write <video>.reward.mp4 with the reward curve beside the frames."""
    report: str = "terminal"
    """terminal: print the tables; html: also write report.html, one self-contained page
    (open it offline) with each video playing beside its reward curves, a marker at the
    shown frame (click a curve to seek), and the tables. Page videos are re-encoded (VP9
    WebM) at most 240 px tall; a video of more than 900 scored frames keeps every k-th,
    played at real speed."""
    label_column: Any = None
    """Ground-truth column(s) to compare with (default: all numeric columns)."""
    compile: Any = False
    """torch.compile the image tower: false, true, or a mode (reduce-overhead,
    max-autotune); pays on GPUs."""

    def check_scoring(self, goal_required: bool = True) -> None:
        """Check (and normalise) the shared keys in place; torch-free."""
        self.check_clip()
        self.goal = check_prompt_value(self.goal, "goal", required=goal_required)
        self.baseline = check_prompt_value(self.baseline, "baseline", required=False)
        # without a goal (record: the env's default prompts) the baseline is not known yet
        has_baseline = self.baseline is not None or self.goal is None
        self.alpha = check_alphas(self.alpha, has_baseline=has_baseline)
        self.format = check_choice("format", self.format, FORMATS)
        self.report = check_choice("report", self.report, REPORTS)
        self.compile = resolve_compile(self.compile)
        if self.label_column is not None:
            cols = self.label_column if isinstance(self.label_column, list) else [self.label_column]
            self.label_column = [str(c) for c in cols]
        check_out_dir(self.out)

    def scoring_values(self) -> dict[str, Any]:
        """The shared keys as a dict, to hand a recording's settings to the scoring run."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ScoringSettings)}


@dataclass
class ScoreSettings(ScoringSettings):
    """Settings of ``python -m vlmrm.score``."""

    videos: Any = None
    """Video files (mp4, webm, gif, ...) or folders of PNG frames; a list [a.mp4,b.mp4] or
    bare paths."""
    out: str = "scores"
    """Output folder."""
    seed: int = 0
    """Random seed (scoring itself is deterministic)."""
    stride: int = 1
    """Score every stride-th frame."""
    start: float | None = None
    """First time to score, seconds."""
    end: float | None = None
    """Stop before this time, seconds."""
    fps: float | None = None
    """Frame rate for PNG folders (or to override the video's)."""
    labels: str | None = None
    """CSV of per-frame ground truth (columns: [video,] [frame,] values...); 'auto' looks
    for <video>.labels.csv or labels.csv beside each video."""

    def validate(self) -> None:
        self.videos = check_videos(self.videos)
        self.check_scoring(goal_required=True)
        self.stride = check_int("stride", self.stride, 1)


@dataclass
class RecordSettings(ScoringSettings):
    """Settings of ``python -m vlmrm.record``."""

    env: str | None = None
    """Env short name (CartPole, MountainCar, Humanoid) or gymnasium id, e.g. CartPole-v1
    (required)."""
    episodes: int = 1
    """Number of episodes to record (one mp4 each)."""
    policy: str = "random"
    """'random' or a Stable-Baselines3 checkpoint .zip."""
    algo: str = "auto"
    """SB3 algorithm of the checkpoint: auto or one of PPO, SAC, TD3, A2C, DQN, DDPG."""
    deterministic: bool = True
    """Deterministic actions from the checkpoint policy."""
    seed: int = 0
    """Seed of the first episode (episode k uses seed + k)."""
    max_steps: int | None = None
    """Steps per episode (default: the env's time limit, else 1000)."""
    width: int | None = None
    """Frame width, for envs that take it."""
    height: int | None = None
    """Frame height, for envs that take it."""
    fps: float | None = None
    """Video frame rate (default: the env's render_fps, else 30)."""
    out: str = "record"
    """Output folder (videos/, labels.csv, scores)."""
    goal: Any = None
    """Goal prompt(s) to score; default the env's own if it has one; none: record only."""
    label_column: Any = None
    """Ground-truth columns to compare with (default: env_reward and all numeric info
    entries)."""

    def validate(self) -> None:
        if not self.env:
            raise ConfigError("env is required, e.g. env=CartPole-v1 or env=Humanoid")
        self.check_scoring(goal_required=False)
        self.episodes = check_int("episodes", self.episodes, 1)
        self.max_steps = check_optional_int("max_steps", self.max_steps, 1)
        if self.algo != "auto" and str(self.algo).upper() not in SB3_ALGOS:
            raise ConfigError(f"algo must be auto or one of {SB3_ALGOS}, got {self.algo!r}")
