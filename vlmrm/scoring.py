"""Reward-only scoring of videos: per-frame CLIP rewards without any training.

The VLM-RM reward is only useful if it rises when the goal is achieved; checking that on
a few videos (successes and failures) before spending GPU-days on RL is the cheapest
debugging there is. :func:`score_video` streams a video through the image tower once and
evaluates every requested (goal, baseline, α) combination on the same embeddings: the
image tower dominates the cost, the reward head is O(D) per frame and combination.

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
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vlmrm.checks import check_alpha
from vlmrm.errors import ConfigError
from vlmrm.models import check_prompts
from vlmrm.reward import CLIPReward, goal_baseline_reward
from vlmrm.video import FrameSource, VideoInfo, iter_batches, probe

Prompt = str | tuple[str, ...]


def prompt_label(prompt: Prompt | None) -> str:
    """How a goal/baseline appears in tables and CSVs: the prompt, several joined by `` | ``."""
    if prompt is None:
        return ""
    return prompt if isinstance(prompt, str) else " | ".join(prompt)


@dataclass
class VideoScores:
    """Per-frame rewards of one video for every (goal, baseline, α) combination.

    Attributes:
        video: the source's display name (the path as given).
        frames: ``(N,)`` indices of the scored frames in the source (stride/range applied).
        times: ``(N,)`` seconds (``index / fps``); NaN when the source has no frame rate.
        rewards: ``(G, B, A, N)`` float32 rewards.
        goals, baselines, alphas: the labels of the first three axes. A goal or baseline
            is a prompt, or a tuple of prompts whose embeddings were averaged; a baseline
            may be ``None`` (no baseline, α = 0 only).
        fps: frame rate used for ``times``.
        embeddings: ``(N, D)`` image embeddings when ``keep_embeddings=True``.
        selection: the ``stride``/``start``/``end``/``fps`` used, to re-read the same frames.
    """

    video: str
    frames: np.ndarray
    times: np.ndarray
    rewards: np.ndarray
    goals: list[Prompt]
    baselines: list[Prompt | None]
    alphas: list[float]
    fps: float | None = None
    embeddings: np.ndarray | None = field(default=None, repr=False)
    selection: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @staticmethod
    def _pick(axis: str, options: list, value: Any) -> int:
        if value is None:
            if len(options) == 1:
                return 0
            raise ConfigError(f"several {axis}s were scored ({options}); pass {axis}=<one of them>")
        for i, opt in enumerate(options):
            if axis == "alpha":
                if isinstance(value, (int, float)) and math.isclose(opt, value, abs_tol=1e-12):
                    return i
            elif opt == value or prompt_label(opt) == value:
                return i
        raise ConfigError(f"{axis} {value!r} was not scored; scored: {options}")

    def curve(
        self, goal: Prompt | None = None, baseline: Prompt | None = None, alpha: float | None = None
    ) -> np.ndarray:
        """The ``(N,)`` rewards of one combination; an axis may be omitted when it has one entry."""
        g = self._pick("goal", self.goals, goal)
        b = self._pick("baseline", self.baselines, baseline)
        a = self._pick("alpha", self.alphas, alpha)
        return self.rewards[g, b, a]

    def variants(self) -> Iterator[tuple[Prompt, Prompt | None, float, np.ndarray]]:
        """Iterate ``(goal, baseline, alpha, rewards)`` over all combinations."""
        for gi, g in enumerate(self.goals):
            for bi, b in enumerate(self.baselines):
                for ai, a in enumerate(self.alphas):
                    yield g, b, a, self.rewards[gi, bi, ai]

    def to_frame(self):
        """Long-format pandas DataFrame: ``video, frame, time, goal, baseline, alpha, reward``."""
        import pandas as pd

        parts = []
        for g, b, a, r in self.variants():
            parts.append(
                pd.DataFrame(
                    {
                        "video": self.video,
                        "frame": self.frames,
                        "time": self.times,
                        "goal": prompt_label(g),
                        "baseline": prompt_label(b),
                        "alpha": a,
                        "reward": r.astype(np.float64),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def summary(self) -> list[dict[str, Any]]:
        """Per combination: mean, std, min, max and the frame (and time) of the maximum."""
        rows = []
        for g, b, a, r in self.variants():
            k = int(np.argmax(r))
            rows.append(
                {
                    "video": self.video,
                    "goal": prompt_label(g),
                    "baseline": prompt_label(b),
                    "alpha": a,
                    "n_frames": len(self),
                    "mean": float(r.mean()),
                    "std": float(r.std()),
                    "min": float(r.min()),
                    "max": float(r.max()),
                    "argmax_frame": int(self.frames[k]),
                    "argmax_time": float(self.times[k]),
                }
            )
        return rows


def _as_prompt(p: str | Sequence[str], what: str) -> Prompt:
    prompts = check_prompts(p, what)
    return prompts[0] if len(prompts) == 1 else tuple(prompts)


def _prompt_list(value: Any, what: str) -> list[Prompt]:
    """``"p"`` → one prompt; ``["p", "q"]`` → two; ``[["p", "q"]]`` → one averaged pair."""
    if isinstance(value, str):
        return [_as_prompt(value, what)]
    if not isinstance(value, Sequence) or len(value) == 0:
        raise ConfigError(f"{what} must be a prompt or a non-empty list of prompts, got {value!r}")
    return [_as_prompt(v if isinstance(v, str) else list(v), what) for v in value]


def _alpha_list(alphas: Any, default: float) -> list[float]:
    if alphas is None:
        return [float(default)]
    if isinstance(alphas, (int, float)) and not isinstance(alphas, bool):
        return [check_alpha(alphas)]
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence) or len(alphas) == 0:
        raise ConfigError(
            f"alpha must be a number in [0, 1] or a non-empty list of them, got {alphas!r}"
        )
    return [check_alpha(a) for a in alphas]


def _targets(
    reward: CLIPReward, goals: list[Prompt], baselines: list[Prompt | None], alphas: list[float]
) -> list[list[tuple[torch.Tensor, torch.Tensor | None]]]:
    """(goal embedding, goal − baseline direction) per combination; checked before decoding."""
    out = []
    for g in goals:
        row = []
        for b in baselines:
            if b is None and any(a > 0 for a in alphas):
                raise ConfigError(
                    f"alpha > 0 needs a baseline prompt (goal {prompt_label(g)!r} has none); "
                    "add baseline='...' describing the scene without the goal, or use alpha=0"
                )
            gp = [g] if isinstance(g, str) else list(g)
            bp = None if b is None else ([b] if isinstance(b, str) else list(b))
            row.append(reward.target_embeddings(gp, bp))
        out.append(row)
    return out


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
        start, end: time range in seconds, ``start <= t < end``.
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
    is_clip = isinstance(reward_model, CLIPReward)
    if not is_clip:
        if not callable(reward_model):
            raise ConfigError(
                f"reward_model must be a vlmrm.CLIPReward or a callable frames -> rewards, got {type(reward_model).__name__}"
            )
        if alphas is not None or goals is not None or baselines is not None:
            raise ConfigError(
                "alphas/goals/baselines can only be swept with a vlmrm.CLIPReward; a generic "
                "callable reward model gives one reward curve"
            )
    if is_clip:
        goal_list = (
            [_as_prompt(reward_model.goal_prompts, "goal")]
            if goals is None
            else _prompt_list(goals, "goal")
        )
        if baselines is None:
            base_list: list[Prompt | None] = [
                None
                if reward_model.baseline_prompts is None
                else _as_prompt(reward_model.baseline_prompts, "baseline")
            ]
        else:
            items = [baselines] if isinstance(baselines, str) else list(baselines)
            if not items:
                raise ConfigError("baselines must not be an empty list")
            base_list = [
                None if b is None else _as_prompt(b if isinstance(b, str) else list(b), "baseline")
                for b in items
            ]
        alpha_list = _alpha_list(alphas, reward_model.alpha)
        targets = _targets(reward_model, goal_list, base_list, alpha_list)
        bs = batch_size or reward_model.batch_size or reward_model.clip.batch_size
    else:
        goal_list = [getattr(reward_model, "__name__", type(reward_model).__name__)]
        base_list = [None]
        alpha_list = [float(getattr(reward_model, "alpha", float("nan")))]
        bs = batch_size or 64

    info = probe(source, fps=fps)
    if name is not None:
        info = VideoInfo(name, info.kind, info.fps, info.n_frames, info.size)
    G, B, A = len(goal_list), len(base_list), len(alpha_list)
    index_parts: list[np.ndarray] = []
    reward_parts: list[np.ndarray] = []
    emb_parts: list[np.ndarray] = []
    bar = _progress_bar(progress, info, stride)
    try:
        for idx, frames in iter_batches(
            source, bs, stride=stride, start=start, end=end, fps=fps, info=info
        ):
            if is_clip:
                emb = reward_model.clip.embed_images(frames, batch_size=bs)
                out = np.empty((G, B, A, len(idx)), np.float32)
                for gi in range(G):
                    for bi in range(B):
                        g, d = targets[gi][bi]
                        r = goal_baseline_reward(emb, g, d, alpha_list)
                        out[gi, bi] = r.float().cpu().numpy()
                if keep_embeddings:
                    emb_parts.append(emb.float().cpu().numpy())
            else:
                r = reward_model(frames)
                if hasattr(r, "detach"):
                    r = r.detach().cpu().numpy()
                r = np.asarray(r, dtype=np.float32).reshape(-1)
                if r.shape[0] != len(idx):
                    raise ConfigError(
                        f"the reward model returned {r.shape[0]} rewards for {len(idx)} frames"
                    )
                out = r.reshape(1, 1, 1, -1)
            index_parts.append(idx)
            reward_parts.append(out)
            if bar is not None:
                bar.update(len(idx))
    finally:
        if bar is not None:
            bar.close()
    frames_idx = np.concatenate(index_parts).astype(np.int64)
    times = frames_idx / info.fps if info.fps else np.full(frames_idx.shape, np.nan)
    return VideoScores(
        video=info.name,
        frames=frames_idx,
        times=times.astype(np.float64),
        rewards=np.concatenate(reward_parts, axis=-1),
        goals=goal_list,
        baselines=base_list,
        alphas=alpha_list,
        fps=info.fps,
        embeddings=np.concatenate(emb_parts) if keep_embeddings else None,
        selection={"stride": stride, "start": start, "end": end, "fps": fps},
    )


# --------------------------------------------------------------------------- plots

_CURSOR_RGB = (220, 30, 30)


def _curve_label(scores: VideoScores, g: Prompt, b: Prompt | None) -> str:
    multi_g, multi_b = len(scores.goals) > 1, len(scores.baselines) > 1
    if not multi_g and not multi_b:
        return _short(prompt_label(g))
    parts = [_short(prompt_label(g))] if multi_g else []
    if multi_b:
        parts.append("baseline: " + (_short(prompt_label(b)) if b is not None else "none"))
    return ", ".join(parts)


def _base_name(name: str) -> str:
    return os.path.basename(name.rstrip("/\\")) or name


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def reward_figure(
    scores: VideoScores,
    labels: dict[str, np.ndarray] | None = None,
    *,
    size_px: tuple[int, int] | None = None,
    dpi: int = 100,
    title: str | None = None,
):
    """A matplotlib ``Figure`` of reward over time: one panel per α, one curve per goal/baseline.

    Rewards for different α live on different scales (α = 0 is a cosine, α = 1 is close
    to 1), so each α gets its own panel and y-axis rather than squashing all curves onto
    one. Ground-truth columns, if given, are drawn dashed on a right-hand axis.
    Uses the Agg canvas directly (no pyplot state, works headless).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows = len(scores.alphas)
    compact = size_px is not None
    n_curves = len(scores.goals) * len(scores.baselines) + (min(3, len(labels)) if labels else 0)
    show_legend = n_curves > 1
    ncol = 2 if n_curves > 1 else 1
    legend_in = (0.22 * math.ceil(n_curves / ncol) + 0.1) if show_legend else 0.0
    if size_px is None:
        figsize = (9.0, 1.2 + 2.4 * n_rows + legend_in)
    else:
        figsize = (size_px[0] / dpi, size_px[1] / dpi)
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    use_time = scores.fps is not None and np.isfinite(scores.times).all()
    x = scores.times if use_time else scores.frames
    axes = fig.subplots(n_rows, 1, sharex=True, squeeze=False)[:, 0]
    colors = [f"C{i}" for i in range(10)]
    gt_styles = [("0.35", "--"), ("C7", ":"), ("C8", "-.")]
    handles: list = []
    for ai, (ax, a) in enumerate(zip(axes, scores.alphas, strict=True)):
        k = 0
        for gi, g in enumerate(scores.goals):
            for bi, b in enumerate(scores.baselines):
                (h,) = ax.plot(
                    x,
                    scores.rewards[gi, bi, ai],
                    color=colors[k % 10],
                    lw=1.4,
                    label=_curve_label(scores, g, b),
                )
                if ai == 0:
                    handles.append(h)
                k += 1
        alpha_txt = "" if not np.isfinite(a) else f"α = {a:g}"
        ax.set_ylabel(
            alpha_txt if compact else f"CLIP reward ({alpha_txt})" if alpha_txt else "CLIP reward"
        )
        ax.grid(True, alpha=0.3)
        if labels:
            tw = ax.twinx()
            for (col, y), (c, ls) in zip(list(labels.items())[:3], gt_styles, strict=False):
                finite = y[np.isfinite(y)]
                binary = finite.size > 0 and bool(np.isin(finite, (0.0, 1.0)).all())
                (h,) = tw.plot(
                    x,
                    y,
                    color=c,
                    ls=ls,
                    lw=1.2,
                    label=f"ground truth: {col}",
                    drawstyle="steps-mid" if binary else "default",
                )
                if ai == 0:
                    handles.append(h)
            tw.set_ylabel("ground truth" if len(labels) > 1 else next(iter(labels)))
    axes[-1].set_xlabel("time (s)" if use_time else "frame")
    if title is None:
        base = scores.baselines[0] if len(scores.baselines) == 1 else None
        title = _base_name(scores.video)
        if len(scores.goals) == 1:
            title += f" — goal: {_short(prompt_label(scores.goals[0]), 60)!r}"
        if base is not None:
            title += f", baseline: {_short(prompt_label(base), 40)!r}"
    fig.suptitle(title, fontsize="medium")
    bottom = 0.0
    if show_legend:
        # one legend for all panels, below them: it never hides a curve
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize="small", frameon=False)
        bottom = min(0.45, legend_in / figsize[1])
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    return fig


def plot_scores(
    scores: VideoScores,
    path: str | Any,
    labels: dict[str, np.ndarray] | None = None,
    *,
    title: str | None = None,
) -> str:
    """Save the reward-over-time plot of :func:`reward_figure` as a PNG; return the path."""
    fig = reward_figure(scores, labels, title=title)
    fig.savefig(str(path))
    return str(path)


def _resize_nearest(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    width = max(2, int(round(w * height / h / 2)) * 2)
    rows = np.minimum((np.arange(height) * h) // height, h - 1)
    cols = np.minimum((np.arange(width) * w) // width, w - 1)
    return frame[rows][:, cols]


def write_reward_video(
    scores: VideoScores,
    path: str | Any,
    source: FrameSource | None = None,
    labels: dict[str, np.ndarray] | None = None,
    *,
    height: int = 360,
    quality: float = 7.0,
) -> str:
    """Write an mp4 of the frames with the reward plot beside them and a cursor at the current frame.

    The frames are read again from ``source`` (default: ``scores.video``) with the same
    stride and range, so memory stays flat. The plot is drawn once; per frame only the
    cursor column is painted, so this costs little more than encoding the video.
    """
    from vlmrm.video import VideoWriter, iter_frames

    src = scores.video if source is None else source
    sel = dict(scores.selection)
    height = max(int(height), 120) // 2 * 2
    frames_iter = iter_frames(src, **sel)
    first_idx, first = next(frames_iter)
    height = max(height, first.shape[0] // 2 * 2)
    panel_w = int(height * 1.6) // 2 * 2
    fig = reward_figure(scores, labels, size_px=(panel_w, height), dpi=72)
    fig.canvas.draw()
    panel = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    ph = panel.shape[0]
    if panel.shape[:2] != (height, panel_w):  # rounding of figure inches → pixels
        panel = _resize_nearest(panel, height)
    scale_y = panel.shape[0] / ph
    use_time = scores.fps is not None and np.isfinite(scores.times).all()
    xs = scores.times if use_time else scores.frames.astype(np.float64)
    spans = []
    for ax in fig.axes[: len(scores.alphas)]:
        bb = ax.get_window_extent()
        r0, r1 = int((ph - bb.y1) * scale_y), int((ph - bb.y0) * scale_y)
        cols = (
            ax.transData.transform(np.c_[xs, np.zeros_like(xs)])[:, 0]
            * panel.shape[1]
            / (fig.bbox.width or 1)
        )
        spans.append((r0, r1, np.clip(np.rint(cols).astype(int), 0, panel.shape[1] - 2)))
    out_fps = max(1.0, (scores.fps or 30.0) / max(1, int(sel.get("stride") or 1)))
    expected = iter(enumerate(scores.frames))

    def frames_with_cursor():
        for idx, frame in _chain_first(first_idx, first, frames_iter):
            k, want = next(expected, (None, None))
            if want is None:
                return
            if idx != want:
                raise ConfigError(
                    f"{scores.video!r} changed since it was scored (frame {idx} vs {want})"
                )
            p = panel.copy()
            for r0, r1, cols in spans:
                p[r0:r1, cols[k] : cols[k] + 2] = _CURSOR_RGB
            yield np.concatenate([_resize_nearest(frame, height), p], axis=1)

    with VideoWriter(path, fps=out_fps, quality=quality) as w:
        for f in frames_with_cursor():
            w.write(f)
    return str(path)


def _chain_first(idx: int, frame: np.ndarray, rest: Iterator[tuple[int, np.ndarray]]):
    yield idx, frame
    yield from rest
