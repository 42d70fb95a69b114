"""Write a tuning dataset from env rollouts: per-split JSONL files, frames, states and manifest.

See :mod:`vlmrm.tune.rollouts` (the command) for what each file holds.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write, atomic_write_json, atomic_write_lines
from vlmrm.runtime.images import save_png
from vlmrm.tune.data.records import RankedSet, write_ranked_sets
from vlmrm.tune.rollouts.frames import (
    RolloutFrame,
    cap_per_caption,
    caption_sets,
    goal_pair_sets,
    goal_ranked_sets,
    rollout_frames,
    split_episodes,
)
from vlmrm.tune.rollouts.predicates import PredicateSet, default_predicates, load_predicates
from vlmrm.tune.rollouts.settings import SPLITS, RolloutSettings


@dataclass
class RolloutDataset:
    """What :func:`build_rollout_dataset` wrote, and counts for a summary line."""

    out: Path
    files: dict[str, dict[str, Path]]
    frames: dict[str, int]
    caption_counts: dict[str, dict[str, int]]
    sets: dict[str, dict[str, int]]
    episodes: dict[str, int]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        for split in SPLITS:
            s = self.sets.get(split, {})
            parts.append(
                f"{split}: {self.episodes.get(split, 0)} episodes, {self.frames.get(split, 0)} frames, "
                f"{s.get('captions', 0)} caption sets, {s.get('goal_pairs', 0)} goal pairs, "
                f"{s.get('goal_ranked', 0)} goal rankings"
            )
        return f"wrote {self.out} in {self.seconds:.1f}s — " + "; ".join(parts)


@dataclass
class _Labelled:
    """The rollout frames with their captions, goal distances, splits and file names."""

    frames: list[RolloutFrame]
    captions: list[str | None]
    distances: np.ndarray
    split_of: dict[int, str]
    names: list[str]


def _split_sets(
    cfg: RolloutSettings, lab: _Labelled, idx: list[int], split: str, out: Path,
    predicates: PredicateSet, rng: np.random.Generator,
) -> tuple[dict[str, list[RankedSet]], list[str]]:
    """The ranked sets of one split, and its probe rows (as JSON lines)."""
    split_dir = (out / split).resolve()
    paths = {i: os.fspath((out / lab.names[i]).resolve()) for i in idx}
    labelled = [i for i in idx if lab.captions[i] is not None]
    probe = [
        json.dumps({"image": os.path.relpath(paths[i], split_dir), "caption": lab.captions[i]}) for i in labelled
    ]
    sets = {
        "captions": caption_sets(lab.frames, labelled, paths, lab.names, lab.captions, predicates.captions),
        "goal_pairs": [],
        "goal_ranked": [],
    }
    goal = predicates.goal
    if goal is not None:
        sets["goal_pairs"] = goal_pair_sets(lab.frames, idx, paths, lab.names, lab.distances, goal)
        count = cfg.ranked_sets or max(1, len(idx) // max(cfg.ranked_size, 2))
        sets["goal_ranked"] = goal_ranked_sets(
            [paths[i] for i in idx], lab.distances[idx], goal.caption, size=cfg.ranked_size,
            count=count, resolution=goal.resolution, rng=rng, prefix=f"{split}-goal",
        )
    return sets, probe


def _write_split(split_dir: Path, sets: dict[str, list[RankedSet]], probe: list[str]) -> dict[str, Path]:
    files = {name: split_dir / f"{name}.jsonl" for name in ("captions", "goal_pairs", "goal_ranked", "preferences", "probe")}
    for name in ("captions", "goal_pairs", "goal_ranked"):
        write_ranked_sets(files[name], sets[name])
    write_ranked_sets(files["preferences"], [*sets["goal_pairs"], *sets["goal_ranked"]])
    atomic_write_lines(files["probe"], probe)
    return files


def _write_states(path: Path, lab: _Labelled, keep: Sequence[int], variables: Sequence[str]) -> None:
    """``states.csv``: one row per kept frame with its state, caption and goal distance."""
    header = ["image", "episode", "step", "policy", "noise", "split", *variables,
              "caption", "goal_distance", "success", "terminal"]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for i in keep:
                f = lab.frames[i]
                w.writerow([
                    lab.names[i], f.episode, f.step, f.policy, f"{f.noise:.3f}", lab.split_of[f.episode],
                    *(f"{v:.6g}" for v in f.state), lab.captions[i] or "", f"{lab.distances[i]:.6g}",
                    "" if f.success is None else int(bool(f.success)), int(f.terminal),
                ])

    atomic_write(path, write)


def _label_frames(cfg: RolloutSettings, predicates: PredicateSet, rng: np.random.Generator) -> _Labelled:
    frames = rollout_frames(
        cfg.env, cfg.episodes, policies=cfg.policy_kinds, noise=cfg.noise_range,
        max_steps=cfg.max_steps, stride=cfg.stride, size=cfg.size, seed=cfg.seed,
    )
    vectors = np.stack([f.state for f in frames])
    return _Labelled(
        frames=frames,
        captions=predicates.label(vectors),
        distances=predicates.goal_distance(vectors),
        split_of=split_episodes(frames, cfg.eval_fraction, rng),
        names=[f"frames/e{f.episode:05d}_s{f.step:04d}.png" for f in frames],
    )


def build_rollout_dataset(
    cfg: RolloutSettings,
    predicates: PredicateSet | None = None,
    say: Callable[[str], None] | None = None,
) -> RolloutDataset:
    """Roll out, caption and write a tuning dataset; see :mod:`vlmrm.tune.rollouts` for the files."""
    say = say or (lambda msg: None)
    t0 = time.perf_counter()
    cfg = cfg.validate()
    if predicates is None:
        predicates = load_predicates(cfg.labels) if cfg.labels else default_predicates(cfg.env)
    out = Path(cfg.out)
    if (out / "manifest.json").exists() and not cfg.overwrite:
        raise ConfigError(f"{out} already holds a rollout dataset; use overwrite=true or another out=...")
    rng = np.random.default_rng(cfg.seed)
    lab = _label_frames(cfg, predicates, rng)
    say(f"rolled out {cfg.episodes} episodes: {len(lab.frames)} frames")
    (out / "frames").mkdir(parents=True, exist_ok=True)
    result = RolloutDataset(out=out, files={}, frames={}, caption_counts={}, sets={}, episodes={})
    keep: list[int] = []
    for split in SPLITS:
        idx = [i for i, f in enumerate(lab.frames) if lab.split_of[f.episode] == split]
        idx = cap_per_caption(idx, lab.captions, cfg.max_per_caption, rng)
        keep.extend(idx)
        sets, probe = _split_sets(cfg, lab, idx, split, out, predicates, rng)
        result.files[split] = _write_split(out / split, sets, probe)
        result.frames[split] = len(idx)
        result.episodes[split] = len({lab.frames[i].episode for i in idx})
        result.caption_counts[split] = dict(Counter("<none>" if lab.captions[i] is None else lab.captions[i] for i in idx))
        result.sets[split] = {name: len(s) for name, s in sets.items()}
        if not sets["captions"]:
            result.notes.append(f"{split}: no captioned frames (do the predicate intervals match the states?)")
    keep.sort()
    for i in keep:
        save_png(out / lab.names[i], lab.frames[i].image)
    _write_states(out / "states.csv", lab, keep, predicates.variables)
    result.seconds = time.perf_counter() - t0
    _write_manifest(out, cfg, predicates, result)
    return result


def _write_manifest(out: Path, cfg: RolloutSettings, predicates: PredicateSet, result: RolloutDataset) -> None:
    """``manifest.json`` last: its presence marks a complete dataset."""
    goal = predicates.goal
    atomic_write_json(out / "manifest.json", {
        "config": asdict(cfg),
        "predicates": predicates.source,
        "variables": list(predicates.variables),
        "captions": predicates.captions,
        "goal": None if goal is None else {"caption": goal.caption, "baseline": goal.baseline},
        "frames": result.frames,
        "episodes": result.episodes,
        "caption_counts": result.caption_counts,
        "sets": result.sets,
        "files": {s: {k: os.path.relpath(p, out) for k, p in fs.items()} for s, fs in result.files.items()},
        "notes": result.notes,
    })
