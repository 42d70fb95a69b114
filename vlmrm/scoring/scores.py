"""What scoring produced: :class:`VideoScores` of a video, :class:`ScoreRun` of a run, and how
prompts are labelled and results made JSON.

Torch-free (NumPy only), so results can be loaded, tabled and diagnosed without a model.
This is the bottom of :mod:`vlmrm.scoring`: the files (:mod:`~vlmrm.scoring.outputs`), the
tables (:mod:`~vlmrm.scoring.report`) and the page (:mod:`~vlmrm.scoring.html_report`) all
read a :class:`ScoreRun`, so it lives below the three of them and none imports another back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError

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


def short(text: str, n: int = 48) -> str:
    """``text`` cut to ``n`` characters with an ellipsis (table cells, plot legends)."""
    return text if len(text) <= n else text[: n - 1] + "…"


def base_name(name: str) -> str:
    """The file or folder name of a video path (trailing slashes ignored)."""
    return os.path.basename(name.rstrip("/\\")) or name


@dataclass
class ScoreRun:
    """What a scoring run produced: per-video scores, diagnostics rows, failures, files."""

    scores: list[Any] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every video was scored (and drawn), 1 when some had problems."""
        return 1 if self.failures else 0


def json_safe(x: Any) -> Any:
    """NaN/inf → ``null`` and NumPy scalars → Python ones, so the JSON is standard."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return json_safe(x.item())
    return x
