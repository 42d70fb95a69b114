"""Reward-only scoring of videos: per-frame CLIP rewards without any training.

The VLM-RM reward is only useful if it rises when the goal is achieved; checking that on
a few videos (successes and failures) before spending GPU-days on RL is the cheapest
debugging there is. :func:`score_video` streams a video through the image tower once and
evaluates every requested (goal, baseline, α) combination on the same embeddings with
:meth:`vlmrm.CLIPReward.reward_grid`: the image tower dominates the cost, the reward head
is O(D) per frame and combination.

Example:
    >>> import numpy as np, vlmrm
    >>> from vlmrm.scoring import score_video
    >>> clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    >>> reward = vlmrm.CLIPReward(clip, goal="a pole standing upright", baseline="a pole")
    >>> frames = np.zeros((10, 64, 64, 3), np.uint8)
    >>> scores = score_video(frames, reward, alphas=[0.0, 0.5, 1.0])
    >>> scores.rewards.shape  # (goals, baselines, alphas, frames)
    (1, 1, 3, 10)
    >>> scores.curve(alpha=0.5).shape
    (10,)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmrm.checks import check_alphas
from vlmrm.errors import ConfigError
from vlmrm.models import check_prompts
from vlmrm.reward import CLIPReward, score_frames
from vlmrm.scoring.scores import Prompt, VideoScores, prompt_label
from vlmrm.video import FrameSource, VideoInfo, iter_batches, probe


def _as_prompt(p: str | Sequence[str], what: str) -> Prompt:
    prompts = check_prompts(p, what)
    return prompts[0] if len(prompts) == 1 else tuple(prompts)


def prompt_list(value: Any, what: str) -> list[Prompt]:
    """``"p"`` → one prompt; ``["p", "q"]`` → two; ``[["p", "q"]]`` → one averaged pair."""
    if isinstance(value, str):
        return [_as_prompt(value, what)]
    if not isinstance(value, Sequence) or len(value) == 0:
        raise ConfigError(f"{what} must be a prompt or a non-empty list of prompts, got {value!r}")
    return [_as_prompt(v if isinstance(v, str) else list(v), what) for v in value]


def _baseline_list(value: Any) -> list[Prompt | None]:
    """Like :func:`prompt_list`, with ``None`` entries meaning "no baseline"."""
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ConfigError("baselines must not be an empty list")
    return [
        None if b is None else _as_prompt(b if isinstance(b, str) else list(b), "baseline")
        for b in items
    ]


def _alpha_list(alphas: Any, default: float, has_baseline: bool) -> list[float]:
    if alphas is None:
        return [float(default)]
    if isinstance(alphas, (str, bytes)) or (
        not isinstance(alphas, (int, float, Sequence)) or isinstance(alphas, bool)
    ):
        raise ConfigError(
            f"alpha must be a number in [0, 1] or a non-empty list of them, got {alphas!r}"
        )
    return check_alphas(alphas, has_baseline=has_baseline)


def _prompts(p: Prompt | None) -> list[str] | None:
    return None if p is None else ([p] if isinstance(p, str) else list(p))


@dataclass
class ClipSweep:
    """The goal × baseline × α grid of one :class:`CLIPReward`, evaluated from one encoding pass.

    ``views`` holds one :class:`CLIPReward` per baseline (same model and cached prompt
    embeddings), so each baseline's ``(goals, α)`` block is one
    :meth:`~vlmrm.CLIPReward.reward_grid` call on the batch's embeddings.
    """

    reward: CLIPReward
    goals: list[Prompt]
    baselines: list[Prompt | None]
    alphas: list[float]
    views: list[CLIPReward]

    @classmethod
    def build(cls, reward: CLIPReward, goals: Any, baselines: Any, alphas: Any) -> ClipSweep:
        """Check every combination (before any frame is decoded) and prepare the views."""
        goal_list = (
            [_as_prompt(reward.goal_prompts, "goal")]
            if goals is None
            else prompt_list(goals, "goal")
        )
        if baselines is None:
            base_list = [
                None
                if reward.baseline_prompts is None
                else _as_prompt(reward.baseline_prompts, "baseline")
            ]
        else:
            base_list = _baseline_list(baselines)
        alpha_list = _alpha_list(alphas, reward.alpha, has_baseline=None not in base_list)
        views = []
        for b in base_list:
            view = CLIPReward(
                reward.clip,
                goal=_prompts(goal_list[0]),
                baseline=_prompts(b),
                renormalize_means=reward.renormalize_means,
                batch_size=reward.batch_size,
            )
            for g in goal_list[1:]:  # a zero goal-baseline direction fails now, not mid-video
                view.target_embeddings(_prompts(g), _prompts(b))
            views.append(view)
        return cls(reward, goal_list, base_list, alpha_list, views)

    def __call__(self, frames: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(G, B, A, n)`` float32 rewards and the ``(n, D)`` embeddings of one batch."""
        emb = self.reward.clip.embed_images(frames, batch_size=batch_size)
        goals = [_prompts(g) for g in self.goals]
        grid = [view.reward_grid(emb, goals=goals, alphas=self.alphas) for view in self.views]
        rewards = np.stack([g.cpu().numpy() for g in grid], axis=1).astype(np.float32)
        return rewards, emb


def _callable_scorer(
    reward_model: Callable[[np.ndarray], Any], alphas: Any, goals: Any, baselines: Any
):
    if not callable(reward_model):
        raise ConfigError(
            "reward_model must be a vlmrm.CLIPReward or a callable frames -> rewards, "
            f"got {type(reward_model).__name__}"
        )
    if alphas is not None or goals is not None or baselines is not None:
        raise ConfigError(
            "alphas/goals/baselines can only be swept with a vlmrm.CLIPReward; a generic "
            "callable reward model gives one reward curve"
        )

    def scorer(frames: np.ndarray, batch_size: int) -> tuple[np.ndarray, None]:
        return score_frames(reward_model, frames).reshape(1, 1, 1, -1), None

    return scorer


def _progress_bar(progress: bool | Mapping[str, Any], info: VideoInfo, stride: int):
    """A tqdm bar, or ``None``; a mapping gives tqdm options, ``prefix`` goes before the description."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    options = dict(progress) if isinstance(progress, Mapping) else {}
    prefix = options.pop("prefix", "")
    total = None if info.n_frames is None else math.ceil(info.n_frames / stride)
    kwargs = {
        "total": total,
        "desc": f"{prefix}scoring {info.name}",
        "unit": "frame",
        "leave": False,
        "dynamic_ncols": True,
    }
    return tqdm(**{**kwargs, **options})


def _stream(
    source: FrameSource,
    scorer: Callable,
    batch_size: int,
    info: VideoInfo,
    bar: Any,
    keep: bool,
    **sel,
):
    """Run ``scorer`` over every batch; the frame indices, rewards and (kept) embeddings."""
    index_parts, reward_parts, emb_parts = [], [], []
    try:
        for idx, frames in iter_batches(source, batch_size, info=info, **sel):
            rewards, emb = scorer(frames, batch_size)
            index_parts.append(idx)
            reward_parts.append(rewards)
            if keep and emb is not None:
                emb_parts.append(emb.float().cpu().numpy())
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    embeddings = np.concatenate(emb_parts) if emb_parts else None
    return (
        np.concatenate(index_parts).astype(np.int64),
        np.concatenate(reward_parts, axis=-1),
        embeddings,
    )


def score_video(
    source: FrameSource,
    reward_model: CLIPReward | Callable[[np.ndarray], Any],
    *,
    alphas: float | Sequence[float] | None = None,
    goals: str | Sequence[str | Sequence[str]] | None = None,
    baselines: str | Sequence[str | Sequence[str] | None] | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    batch_size: int | None = None,
    keep_embeddings: bool = False,
    progress: bool | Mapping[str, Any] = False,
    name: str | None = None,
) -> VideoScores:
    """Score every selected frame of a video with a reward model, streaming in batches.

    Args:
        source: a video file (anything imageio/ffmpeg reads: mp4, webm, gif, ...), a
            folder of image frames, an ``(N, H, W, 3)`` uint8 array, or an iterable of frames.
        reward_model: a :class:`vlmrm.CLIPReward` (all combinations from one encoding
            pass) or any callable frames → one reward per frame (then ``alphas``,
            ``goals`` and ``baselines`` must be left unset).
        alphas: one α or a list; default the reward model's own α.
        goals: a goal prompt or a list of goals (a goal may itself be a list of prompts,
            averaged); default the reward model's goal.
        baselines: a baseline prompt or list of baselines (``None`` entries mean "no
            baseline"); default the reward model's baseline.
        stride: score every ``stride``-th frame.
        start: the first time scored, in seconds (``start <= t``).
        end: the time where scoring stops, in seconds (``t < end``).
        fps: frame rate for sources without one (image folders, arrays), or to override.
        batch_size: frames decoded and encoded together (default: the model's batch size);
            peak memory is about one batch of frames.
        keep_embeddings: also return the ``(N, D)`` image embeddings.
        progress: show a progress bar over frames; a mapping of tqdm options (plus
            ``prefix``, put before the description) customises it, e.g.
            ``{"prefix": "[rank 1/4] ", "position": 1}`` under torchrun.
        name: display name for the result (default: the path as given).

    Returns:
        :class:`VideoScores` with ``rewards`` of shape ``(goals, baselines, alphas, frames)``.

    Raises:
        vlmrm.video.VideoError: the video is missing, empty, corrupt or has no frames in range.
        ConfigError: bad α, prompts, stride or range.
    """
    if isinstance(reward_model, CLIPReward):
        scorer = ClipSweep.build(reward_model, goals, baselines, alphas)
        goal_list, base_list, alpha_list = scorer.goals, scorer.baselines, scorer.alphas
        bs = batch_size or reward_model.batch_size or reward_model.clip.batch_size
    else:
        scorer = _callable_scorer(reward_model, alphas, goals, baselines)
        goal_list = [getattr(reward_model, "__name__", type(reward_model).__name__)]
        base_list, alpha_list = [None], [float(getattr(reward_model, "alpha", float("nan")))]
        bs = batch_size or 64
    info = probe(source, fps=fps)
    if name is not None:
        info = VideoInfo(name, info.kind, info.fps, info.n_frames, info.size)
    bar = _progress_bar(progress, info, stride)
    frames_idx, rewards, embeddings = _stream(
        source, scorer, bs, info, bar, keep_embeddings, stride=stride, start=start, end=end, fps=fps
    )
    times = frames_idx / info.fps if info.fps else np.full(frames_idx.shape, np.nan)
    return VideoScores(
        video=info.name,
        frames=frames_idx,
        times=times.astype(np.float64),
        rewards=rewards,
        goals=goal_list,
        baselines=base_list,
        alphas=alpha_list,
        fps=info.fps,
        embeddings=embeddings,
        selection={"stride": stride, "start": start, "end": end, "fps": fps},
    )


__all__ = ["ClipSweep", "VideoScores", "prompt_label", "prompt_list", "score_video"]
