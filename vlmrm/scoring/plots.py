"""Pictures of a scored video: reward-over-time plots and reward videos.

Both are written through :mod:`vlmrm.runtime.atomic`, so a run killed while drawing
leaves the previous file (or none), never half of a PNG or an mp4.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write
from vlmrm.scoring.scores import Prompt, VideoScores, base_name, prompt_label, short
from vlmrm.video import FrameSource

_CURSOR_RGB = (220, 30, 30)


def curve_label(scores: VideoScores, g: Prompt, b: Prompt | None) -> str:
    """A curve's legend text: the goal and/or baseline, whichever several were scored."""
    multi_g, multi_b = len(scores.goals) > 1, len(scores.baselines) > 1
    if not multi_g and not multi_b:
        return short(prompt_label(g))
    parts = [short(prompt_label(g))] if multi_g else []
    if multi_b:
        parts.append("baseline: " + (short(prompt_label(b)) if b is not None else "none"))
    return ", ".join(parts)


_COLORS = [f"C{i}" for i in range(10)]
_GT_STYLES = [("0.35", "--"), ("C7", ":"), ("C8", "-.")]


def _draw_panel(
    ax: Any, scores: VideoScores, ai: int, x: np.ndarray, labels: Any, compact: bool
) -> list:
    """The panel of α number ``ai``: one curve per goal/baseline, ground truth on a right axis."""
    a = scores.alphas[ai]
    handles = []
    k = 0
    for gi, g in enumerate(scores.goals):
        for bi, b in enumerate(scores.baselines):
            (h,) = ax.plot(
                x,
                scores.rewards[gi, bi, ai],
                color=_COLORS[k % 10],
                lw=1.4,
                label=curve_label(scores, g, b),
            )
            handles.append(h)
            k += 1
    alpha_txt = "" if not np.isfinite(a) else f"α = {a:g}"
    ax.set_ylabel(
        alpha_txt if compact else f"CLIP reward ({alpha_txt})" if alpha_txt else "CLIP reward"
    )
    ax.grid(True, alpha=0.3)
    if labels:
        tw = ax.twinx()
        for (col, y), (c, ls) in zip(list(labels.items())[:3], _GT_STYLES, strict=False):
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
            handles.append(h)
        tw.set_ylabel("ground truth" if len(labels) > 1 else next(iter(labels)))
    return handles


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
    handles: list = []
    for ai, ax in enumerate(axes):
        drawn = _draw_panel(ax, scores, ai, x, labels, compact)
        if ai == 0:
            handles = drawn
    axes[-1].set_xlabel("time (s)" if use_time else "frame")
    if title is None:
        base = scores.baselines[0] if len(scores.baselines) == 1 else None
        title = base_name(scores.video)
        if len(scores.goals) == 1:
            title += f" — goal: {short(prompt_label(scores.goals[0]), 60)!r}"
        if base is not None:
            title += f", baseline: {short(prompt_label(base), 40)!r}"
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
    atomic_write(path, lambda tmp: fig.savefig(str(tmp), format="png"))
    return str(path)


def _resize_nearest(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    width = max(2, int(round(w * height / h / 2)) * 2)
    rows = np.minimum((np.arange(height) * h) // height, h - 1)
    cols = np.minimum((np.arange(width) * w) // width, w - 1)
    return frame[rows][:, cols]


def _reward_panel(scores: VideoScores, labels: Any, height: int, panel_w: int):
    """The reward plot as pixels, and per α panel its rows and the cursor column of each frame."""
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
    return panel, spans


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
    panel, spans = _reward_panel(scores, labels, height, int(height * 1.6) // 2 * 2)
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

    def write(tmp):
        with VideoWriter(tmp, fps=out_fps, quality=quality) as w:
            for f in frames_with_cursor():
                w.write(f)

    atomic_write(path, write)
    return str(path)


def _chain_first(idx: int, frame: np.ndarray, rest: Iterator[tuple[int, np.ndarray]]):
    yield idx, frame
    yield from rest
