"""Rank fidelity: does a fast reward order frames the way the fp32 reward does?

Rewards of frames from one task differ in the third decimal, so a reduced-precision
path whose errors are "small" in absolute terms can still reorder frames, and an RL
agent learns from that order. Every fast path (``fp16``, ``bf16``, ``int8``) is therefore
judged by the Spearman correlation of its rewards with fp32 rewards on the same frames
(≥ 0.999 is the bar this project uses), with the largest absolute difference and the
spread of the rewards reported next to it, so that "max |ΔR| = 1e-4" can be read
against "rewards vary by 2e-3".

Fidelity depends on the weights and on the frames, so check it on your own model and a
sample of your own environment's frames::

    fast = vlmrm.CLIPReward(vlmrm.load_clip(spec, precision="int8"), goal=g, baseline=b)
    ref = vlmrm.CLIPReward(vlmrm.load_clip(spec, precision="fp32"), goal=g, baseline=b)
    print(vlmrm.rank_fidelity(fast, ref, frames))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlmrm.checks import RANK_FIDELITY_BAR
from vlmrm.diagnostics import spearman
from vlmrm.errors import ConfigError
from vlmrm.preprocess import FrameBatch
from vlmrm.reward import RewardModel, score_frames

DEFAULT_BAR = RANK_FIDELITY_BAR


@dataclass(frozen=True)
class RankFidelity:
    """How a candidate reward compares with a reference reward on the same frames."""

    spearman: float
    max_abs_diff: float
    mean_abs_diff: float
    spread: float  # std of the reference rewards across the frames
    frames: int

    def passes(self, bar: float = DEFAULT_BAR) -> bool:
        """True when the candidate keeps the reference's ranking (Spearman ≥ ``bar``)."""
        return self.spearman >= bar

    def __str__(self) -> str:
        verdict = "keeps" if self.passes() else "does NOT keep"
        return (
            f"Spearman {self.spearman:.4f} over {self.frames} frames ({verdict} the ranking at "
            f"{DEFAULT_BAR}); max |dR| {self.max_abs_diff:.1e}, mean |dR| {self.mean_abs_diff:.1e}, "
            f"reward spread (std) {self.spread:.1e}"
        )


def rank_fidelity(
    candidate: RewardModel, reference: RewardModel, frames: FrameBatch
) -> RankFidelity:
    """Score ``frames`` with both rewards and compare them (see the module docstring).

    ``frames`` should be a few dozen or more frames of the task that differ the way the
    agent's frames will (a short random rollout is a good sample); fewer than 3 frames
    have no ranking to keep and are refused.
    """
    cand = score_frames(candidate, frames, np.float64)
    ref = score_frames(reference, frames, np.float64)
    if ref.size < 3:
        raise ConfigError(f"rank fidelity needs at least 3 frames to rank, got {ref.size}")
    diff = np.abs(cand - ref)
    return RankFidelity(
        spearman=float(spearman(cand, ref)),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        spread=float(ref.std()),
        frames=int(ref.size),
    )
