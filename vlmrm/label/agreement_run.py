"""How well does a CLIP reward agree with people? Score the labelled frames, then diagnose.

The frames scored are the PNGs of the sheet folder, the very pixels the person judged
(not a re-decoding of the videos). Every goal × baseline × α combination comes from one
pass of the image tower (:class:`vlmrm.scoring.core.ClipSweep`, as ``vlmrm.score``), and
agreement is measured by :func:`vlmrm.diagnostics.diagnose`: ROC-AUC (the probability
that a frame judged a success gets a higher reward than one judged a failure), Spearman
and Pearson correlation, and the EPIC distance, as the VLM-RM paper reports them.

Two levels are reported: every labelled frame (``label``: the human yes/no), and the
videos (``success rate``: the fraction of a video's frames judged a success against its
mean reward, e.g. one row per evaluation step of a training run).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.label.filled import FilledSheet, read_filled
from vlmrm.label.settings import AgreementSettings
from vlmrm.runtime.atomic import atomic_write_json, atomic_write_text
from vlmrm.runtime.images import load_image


@dataclass
class Agreement:
    """What an import produced: the sheet, the rewards and both tables."""

    sheet: FilledSheet
    rewards: np.ndarray  # (goals, baselines, alphas, frames), frames in sheet.rows order
    combinations: list[tuple[str, str, float]]
    diagnostics: list[dict[str, Any]]
    per_video: list[dict[str, Any]]
    files: list[str]


def build_sweep(settings: AgreementSettings) -> Any:
    """The CLIP of the settings and its checked goal × baseline × α sweep."""
    from vlmrm.models import load_clip
    from vlmrm.reward import CLIPReward
    from vlmrm.scoring.core import ClipSweep

    clip = load_clip(
        settings.model,
        device=None if settings.device == "auto" else settings.device,
        precision=settings.precision,
        pretrained=settings.pretrained,
        backend=settings.backend,
    )
    goals = [settings.goal] if isinstance(settings.goal, str) else settings.goal
    bases = settings.baseline
    first_base = bases if bases is None or isinstance(bases, str) else bases[0]
    reward = CLIPReward(clip, goal=goals[0], baseline=first_base, batch_size=settings.batch_size)
    return ClipSweep.build(reward, goals, bases, settings.alpha)


def score_images(sweep: Any, images: list[Path], batch_size: int | None = None) -> np.ndarray:
    """``(G, B, A, n)`` rewards of image files; frames of one size are encoded together."""
    frames = [load_image(p) for p in images]
    bs = int(batch_size or sweep.reward.batch_size or sweep.reward.clip.batch_size)
    shape = (len(sweep.goals), len(sweep.baselines), len(sweep.alphas), len(frames))
    out = np.full(shape, np.nan, dtype=np.float32)
    by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, f in enumerate(frames):
        by_size[f.shape].append(i)
    for idx in by_size.values():
        for start in range(0, len(idx), bs):
            part = idx[start : start + bs]
            rewards, _ = sweep(np.stack([frames[i] for i in part]), bs)
            out[..., part] = rewards
    return out


def _combinations(sweep: Any) -> list[tuple[int, int, int, str, str, float]]:
    from vlmrm.scoring.scores import prompt_label

    return [
        (gi, bi, ai, prompt_label(g), prompt_label(b), float(a))
        for gi, g in enumerate(sweep.goals)
        for bi, b in enumerate(sweep.baselines)
        for ai, a in enumerate(sweep.alphas)
    ]


def agreement_tables(
    sheet: FilledSheet, rewards: np.ndarray, combos: list[tuple[int, int, int, str, str, float]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Diagnostics rows (frames, then videos) and per-video rows for every combination."""
    from vlmrm.diagnostics import diagnose

    labels = np.array([r.label for r in sheet.rows], dtype=np.float64)
    videos = sorted({r.video for r in sheet.rows})
    members = {v: np.array([r.video == v for r in sheet.rows]) for v in videos}
    diags, per_video = [], []
    for gi, bi, ai, goal, base, alpha in combos:
        r = rewards[gi, bi, ai].astype(np.float64)
        key = {"goal": goal, "baseline": base, "alpha": alpha}
        rates, means = [], []
        for v in videos:
            m = members[v]
            rate, mean = float(labels[m].mean()), float(r[m].mean())
            rates.append(rate)
            means.append(mean)
            per_video.append({"video": v, **key, "labelled": int(m.sum()), "success": int(labels[m].sum()),
                              "success_rate": rate, "mean_reward": mean})
        frames = diagnose(r, labels, label="label").as_dict()
        by_video = diagnose(np.array(means), np.array(rates), label="success rate").as_dict()
        diags.append({"video": "every frame", **key, **frames})
        diags.append({"video": "per video (means)", **key, **by_video})
    return diags, per_video


def _rewards_csv(sheet: FilledSheet, rewards: np.ndarray, combos: list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "video", "frame", "label", "goal", "baseline", "alpha", "reward"])
    for gi, bi, ai, goal, base, alpha in combos:
        for k, row in enumerate(sheet.rows):
            w.writerow([row.id, row.video, row.frame, row.label, goal, base, alpha,
                        f"{float(rewards[gi, bi, ai, k]):.7g}"])
    return buf.getvalue()


def label_agreement(settings: AgreementSettings, sweep: Any = None) -> Agreement:
    """Read the filled CSV, score its labelled frames, diagnose and write the outputs.

    ``sweep``: an already built :class:`~vlmrm.scoring.core.ClipSweep` (default: built from
    the settings). Writes ``agreement.json`` and ``rewards.csv`` to ``settings.out``
    (default the CSV's folder).
    """
    from vlmrm.scoring.outputs import json_safe

    settings.validate()  # a no-op after the command line; checks settings built in Python
    sheet = read_filled(settings.labels, settings.frames_dir)  # before the model: fail fast
    sweep = sweep if sweep is not None else build_sweep(settings)
    rewards = score_images(sweep, [r.image for r in sheet.rows], settings.batch_size)
    combos = _combinations(sweep)
    diags, per_video = agreement_tables(sheet, rewards, combos)
    out = Path(settings.out) if settings.out is not None else Path(settings.labels).parent
    summary = {
        "labels": str(settings.labels),
        "labelled": len(sheet.rows),
        "successes": int(sum(r.label for r in sheet.rows)),
        "unlabelled": sheet.unlabelled,
        "model": settings.model,
        "pretrained": settings.pretrained,
        "diagnostics": diags,
        "per_video": per_video,
    }
    files = [
        str(atomic_write_json(out / "agreement.json", json_safe(summary))),
        str(atomic_write_text(out / "rewards.csv", _rewards_csv(sheet, rewards, combos))),
    ]
    return Agreement(sheet, rewards, [(g, b, a) for *_, g, b, a in combos], diags, per_video, files)
