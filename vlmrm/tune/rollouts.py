"""``python -m vlmrm.tune.rollouts`` — a tuning dataset from rollouts of the user's own env.

When a zero-shot CLIP gives a badly shaped reward for an environment, the way out that
stays language-driven is to fine-tune the reward CLIP on frames of that environment,
captioned by simple predicates of the env state (see :mod:`vlmrm.tune.predicates`), and
then train on the goal sentence as before. This module makes that dataset:

1. roll out a mix of policies — uniform random, and a scripted controller with a
   per-episode amount of action noise (CartPole: a PD balancer, so upright *and*
   falling states are both common; MountainCar: an energy-pumping controller, so the
   car reaches the flag) — rendering frames at CLIP size and keeping ``info["state"]``;
2. split whole episodes into train and eval (held-out frames never share an episode
   with training frames);
3. caption each frame with the first matching predicate rule and measure its distance
   to the goal state;
4. write, per split, JSONL files in the format of :mod:`vlmrm.tune.data`:

   * ``captions.jsonl`` — image-anchored ranked sets: the frame's true caption first,
     every other caption tied below it (for ``loss=contrastive``, ``listwise``, ``dpo``);
   * ``goal_pairs.jsonl`` — goal-vs-baseline pairs: frames near the goal prefer the goal
     caption to the baseline caption, frames far from it prefer the baseline caption
     (what the goal–baseline direction of the VLM-RM reward should encode);
   * ``goal_ranked.jsonl`` — caption-anchored ranked sets: the goal caption and images
     ranked by distance to the goal state (near-equal distances tie);
   * ``preferences.jsonl`` — goal pairs and goal rankings together (for ``loss=dpo``);
   * ``probe.jsonl`` — ``{"image", "caption"}`` rows (the tuner's probe);

   and ``states.csv`` (one row per frame: image, episode, step, policy, split, the state
   variables, caption, goal distance) plus ``manifest.json`` (settings and counts).

Example (then tune with ``python -m vlmrm.tune``; ``benchmarks/offline_learning.py`` runs
exactly this and trains an agent on the result)::

    python -m vlmrm.tune.rollouts env=CartPole episodes=300 size=128 max_per_caption=1500 out=runs/data/cartpole
    python -m vlmrm.tune loss=contrastive model=vlmrm-tiny data=runs/data/cartpole/train/captions.jsonl \
        eval_data=runs/data/cartpole/eval/captions.jsonl lr=1e-3 warmup_steps=50 weight_decay=0 steps=1000 \
        out=runs/cp-contrastive
    python -m vlmrm.tune loss=bt model=vlmrm-tiny pretrained=runs/cp-contrastive/model.safetensors \
        data=runs/data/cartpole/train/preferences.jsonl eval_data=runs/data/cartpole/eval/preferences.jsonl \
        pairs=all lr=1e-3 warmup_steps=50 weight_decay=0 batch_size=64 steps=1000 out=runs/cp-bt

(``loss=dpo beta=1`` works in the second stage too; on CartPole Bradley–Terry ranked the
held-out frames slightly better.)
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError, VLMRMError
from vlmrm.tune.data import RankedSet, write_ranked_sets
from vlmrm.tune.predicates import PredicateSet, default_predicates, load_predicates

POLICIES = ("random", "scripted")
SPLITS = ("train", "eval")
Policy = Callable[[np.ndarray, dict], Any]


@dataclass
class RolloutConfig:
    """Every setting of ``python -m vlmrm.tune.rollouts`` (``key=value``)."""

    env: str = "CartPole"  # short name (CartPole, MountainCar) or a registered gymnasium id
    labels: str = ""  # predicate YAML, or a default's name; default: the env's shipped predicates
    out: str = "runs/rollouts"  # output folder (runs/ is git-ignored)
    episodes: int = 200  # episodes in all (train + eval)
    policies: str = "random,scripted"  # episodes go round-robin over these
    noise: str = (
        "0.0,0.6"  # scripted policy: per-episode random-action probability, uniform in [lo, hi]
    )
    max_steps: int = 200  # steps per episode at most
    stride: int = 2  # keep every stride-th frame (consecutive frames are near duplicates)
    size: int = 64  # frames are square, size x size (vlmrm-tiny: 64; ViT-B-32: 224)
    eval_fraction: float = 0.2  # fraction of episodes held out (by episode)
    max_per_caption: int = 0  # cap frames per caption and split (0: no cap), balances classes
    ranked_size: int = 4  # images per goal-ranking set
    ranked_sets: int = 0  # goal-ranking sets per split (0: one per ranked_size labelled frames)
    seed: int = 0
    overwrite: bool = False  # replace an existing dataset in out


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


# --------------------------------------------------------------------------- policies


def _env_kind(env: Any) -> str:
    name = type(env.unwrapped).__name__.lower()
    if "cartpole" in name:
        return "cartpole"
    if "mountaincar" in name or "mountain_car" in name:
        return "mountaincar"
    return "other"


def make_policy(kind: str, env: Any, rng: np.random.Generator, noise: float = 0.0) -> Policy:
    """A rollout policy ``(obs, info) -> action`` for ``env``.

    ``"random"`` samples the action space uniformly (from ``rng``, so rollouts are
    reproducible). ``"scripted"`` is a simple controller that reaches the goal states
    a random policy rarely visits, taking a random action with probability ``noise``:
    CartPole balances with a PD law on the pole angle (plus a weak pull to the centre);
    MountainCar pushes in the direction of motion, pumping energy until it reaches the
    flag. Envs without a controller fall back to random actions.
    """
    space = env.action_space

    def random_action() -> Any:
        if hasattr(space, "n"):
            return int(rng.integers(int(space.n)))
        lo, hi = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        return rng.uniform(lo, hi).astype(space.dtype)

    if kind == "random":
        return lambda obs, info: random_action()
    if kind != "scripted":
        raise ConfigError(f"unknown policy {kind!r}; choose from {POLICIES}")
    env_kind = _env_kind(env)
    if env_kind == "other":
        return lambda obs, info: random_action()

    def scripted(obs: np.ndarray, info: dict) -> Any:
        if rng.random() < noise:
            return random_action()
        state = np.asarray(info.get("state", obs), dtype=np.float64)
        if env_kind == "cartpole":
            x, x_dot, theta, theta_dot = state[:4]
            return int(0.05 * x + 0.2 * x_dot + theta + 0.3 * theta_dot > 0)
        _, velocity = state[:2]
        push = 1.0 if velocity >= 0 else -1.0
        if velocity == 0.0:
            push = -1.0
        return np.array([push], dtype=space.dtype)

    return scripted


# --------------------------------------------------------------------------- rollouts


@dataclass
class _Frame:
    episode: int
    step: int
    policy: str
    noise: float
    state: np.ndarray
    success: bool | None
    terminal: bool
    image: np.ndarray


def _parse_noise(text: str) -> tuple[float, float]:
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"noise must be 'p' or 'lo,hi' probabilities, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not all(0.0 <= v <= 1.0 for v in vals) or vals[0] > vals[1]:
        raise ConfigError(f"noise must be 'p' or 'lo,hi' with 0 <= lo <= hi <= 1, got {text!r}")
    return vals[0], vals[1]


def _parse_policies(text: str) -> list[str]:
    kinds = [p.strip() for p in str(text).split(",") if p.strip()]
    bad = [k for k in kinds if k not in POLICIES]
    if not kinds or bad:
        raise ConfigError(f"policies must be a comma list of {POLICIES}, got {text!r}")
    return kinds


def rollout_frames(
    env_name: str,
    episodes: int,
    *,
    policies: Sequence[str] = POLICIES,
    noise: tuple[float, float] = (0.0, 0.6),
    max_steps: int = 200,
    stride: int = 1,
    size: int = 64,
    seed: int = 0,
) -> list[_Frame]:
    """Roll out ``episodes`` episodes (policies round-robin) and keep every ``stride``-th frame.

    A frame is the render after ``reset`` or after a step, with the ``info["state"]``
    of that moment, so image and state always agree. The frame after the last step is
    kept too (CartPole: the pole just past falling — a useful "far from goal" example).
    """
    from vlmrm.envs import make_env

    try:
        env = make_env(env_name, width=size, height=size, episode_length=max_steps)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot make env {env_name!r}: {str(exc).splitlines()[0]}") from None
    rng = np.random.default_rng(seed)
    frames: list[_Frame] = []
    try:
        for ep in range(episodes):
            kind = policies[ep % len(policies)]
            eps = float(rng.uniform(*noise)) if kind == "scripted" else 1.0
            policy = make_policy(kind, env, rng, eps)
            obs, info = env.reset(seed=int(rng.integers(2**31)))
            if "state" not in info:
                raise ConfigError(
                    f"env {env_name!r} puts no 'state' in info; rollouts need info['state'] "
                    "(the vlmrm.envs environments provide it)"
                )
            step, done = 0, False
            while True:
                terminal = done
                if step % stride == 0 or terminal:
                    img = env.render()
                    frames.append(
                        _Frame(
                            episode=ep,
                            step=step,
                            policy=kind,
                            noise=eps,
                            state=np.asarray(info["state"], dtype=np.float64).copy(),
                            success=info.get("success"),
                            terminal=terminal,
                            image=np.asarray(img, dtype=np.uint8).copy(),
                        )
                    )
                if done:
                    break
                obs, _, terminated, truncated, info = env.step(policy(obs, info))
                step += 1
                done = bool(terminated or truncated)
    finally:
        env.close()
    return frames


# --------------------------------------------------------------------------- sets


def _split_episodes(
    frames: Sequence[_Frame], eval_fraction: float, rng: np.random.Generator
) -> dict[int, str]:
    """Episode → split; each policy's episodes are split separately so both splits see each policy."""
    by_policy: dict[str, list[int]] = {}
    for f in frames:
        eps = by_policy.setdefault(f.policy, [])
        if not eps or eps[-1] != f.episode:
            eps.append(f.episode)
    split: dict[int, str] = {}
    for eps in by_policy.values():
        eps = sorted(set(eps))
        order = rng.permutation(len(eps))
        n_eval = int(round(eval_fraction * len(eps)))
        if eval_fraction > 0 and n_eval == 0 and len(eps) > 1:
            n_eval = 1
        for rank, i in enumerate(order):
            split[eps[i]] = "eval" if rank < n_eval else "train"
    return split


def _cap_per_caption(
    idx: list[int], captions: list[str | None], cap: int, rng: np.random.Generator
) -> list[int]:
    if cap <= 0:
        return idx
    by: dict[str | None, list[int]] = {}
    for i in idx:
        by.setdefault(captions[i], []).append(i)
    keep: list[int] = []
    for members in by.values():
        if len(members) > cap:
            members = sorted(rng.choice(members, size=cap, replace=False).tolist())
        keep.extend(members)
    return sorted(keep)


def goal_ranked_sets(
    images: Sequence[str],
    distances: np.ndarray,
    caption: str,
    *,
    size: int,
    count: int,
    resolution: float,
    rng: np.random.Generator,
    prefix: str = "goal",
) -> list[RankedSet]:
    """Caption-anchored sets: ``size`` images at distinct distance levels, nearest first.

    Distances are binned by ``resolution`` (near-equal distances are visually equal, so
    forcing an order between them would teach noise); each set draws its images from
    ``size`` different bins, so every set is a strict ranking with visible gaps.
    """
    d = np.asarray(distances, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(d))
    if len(ok) < 2 or size < 2:
        return []
    bins = np.floor(d[ok] / resolution).astype(np.int64) if resolution > 0 else np.arange(len(ok))
    members: dict[int, list[int]] = {}
    for i, b in zip(ok.tolist(), bins.tolist(), strict=True):
        members.setdefault(b, []).append(i)
    levels = sorted(members)
    if len(levels) < 2:
        return []
    k = min(size, len(levels))
    out = []
    for n in range(count):
        chosen_levels = sorted(rng.choice(levels, size=k, replace=False).tolist())
        picks = [members[b][int(rng.integers(len(members[b])))] for b in chosen_levels]
        out.append(
            RankedSet(
                anchor=caption,
                candidates=tuple(images[i] for i in picks),
                anchor_kind="text",
                ranks=tuple(range(k)),
                group=f"{prefix}{n}",
                id=f"{prefix}{n}",
            )
        )
    return out


def _save_png(path: Path, img: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(os.fspath(path), img)


def build_rollout_dataset(
    cfg: RolloutConfig,
    predicates: PredicateSet | None = None,
    say: Callable[[str], None] | None = None,
) -> RolloutDataset:
    """Roll out, caption and write a tuning dataset; see the module docstring for the files."""
    say = say or (lambda msg: None)
    t0 = time.perf_counter()
    cfg = validate_config(cfg)
    if predicates is None:
        predicates = load_predicates(cfg.labels) if cfg.labels else default_predicates(cfg.env)
    out = Path(cfg.out)
    if (out / "manifest.json").exists() and not cfg.overwrite:
        raise ConfigError(
            f"{out} already holds a rollout dataset; use overwrite=true or another out=..."
        )
    rng = np.random.default_rng(cfg.seed)
    frames = rollout_frames(
        cfg.env,
        cfg.episodes,
        policies=_parse_policies(cfg.policies),
        noise=_parse_noise(cfg.noise),
        max_steps=cfg.max_steps,
        stride=cfg.stride,
        size=cfg.size,
        seed=cfg.seed,
    )
    say(f"rolled out {cfg.episodes} episodes: {len(frames)} frames")
    vectors = np.stack([f.state for f in frames])
    captions = predicates.label(vectors)
    distances = predicates.goal_distance(vectors)
    split_of = _split_episodes(frames, cfg.eval_fraction, rng)

    img_dir = out / "frames"
    img_dir.mkdir(parents=True, exist_ok=True)
    names = [f"frames/e{f.episode:05d}_s{f.step:04d}.png" for f in frames]
    result = RolloutDataset(out=out, files={}, frames={}, caption_counts={}, sets={}, episodes={})
    all_caps = predicates.captions
    goal = predicates.goal
    keep_all: list[int] = []
    for split in SPLITS:
        idx = [i for i, f in enumerate(frames) if split_of[f.episode] == split]
        idx = _cap_per_caption(idx, captions, cfg.max_per_caption, rng)
        keep_all.extend(idx)
        split_dir = out / split
        split_dir.mkdir(parents=True, exist_ok=True)
        paths = {i: os.fspath((out / names[i]).resolve()) for i in idx}
        labelled = [i for i in idx if captions[i] is not None]
        caption_sets = []
        probe = []
        for i in labelled:
            true = captions[i]
            others = [c for c in all_caps if c != true]
            probe.append({"image": os.path.relpath(paths[i], split_dir.resolve()), "caption": true})
            if not others:
                continue
            caption_sets.append(
                RankedSet(
                    anchor=paths[i],
                    candidates=(true, *others),
                    ranks=(0, *([1] * len(others))),
                    group=f"ep{frames[i].episode}",
                    id=f"{Path(names[i]).stem}/caption",
                )
            )
        pair_sets, ranked = [], []
        if goal is not None:
            for i in idx:
                d = distances[i]
                if d <= goal.near:
                    pref = (goal.caption, goal.baseline)
                elif d >= goal.far:
                    pref = (goal.baseline, goal.caption)
                else:
                    continue
                pair_sets.append(
                    RankedSet(
                        anchor=paths[i],
                        candidates=pref,
                        group=f"ep{frames[i].episode}",
                        id=f"{Path(names[i]).stem}/goal",
                    )
                )
            count = cfg.ranked_sets or max(1, len(idx) // max(cfg.ranked_size, 2))
            ranked = goal_ranked_sets(
                [paths[i] for i in idx],
                distances[idx],
                goal.caption,
                size=cfg.ranked_size,
                count=count,
                resolution=goal.resolution,
                rng=rng,
                prefix=f"{split}-goal",
            )
        files = {
            "captions": split_dir / "captions.jsonl",
            "goal_pairs": split_dir / "goal_pairs.jsonl",
            "goal_ranked": split_dir / "goal_ranked.jsonl",
            "preferences": split_dir / "preferences.jsonl",
            "probe": split_dir / "probe.jsonl",
        }
        write_ranked_sets(files["captions"], caption_sets)
        write_ranked_sets(files["goal_pairs"], pair_sets)
        write_ranked_sets(files["goal_ranked"], ranked)
        write_ranked_sets(files["preferences"], [*pair_sets, *ranked])
        with files["probe"].open("w", encoding="utf-8") as fh:
            for row in probe:
                fh.write(json.dumps(row) + "\n")
        result.files[split] = files
        result.frames[split] = len(idx)
        result.episodes[split] = len({frames[i].episode for i in idx})
        result.caption_counts[split] = dict(
            Counter(c if c is not None else "<none>" for c in (captions[i] for i in idx))
        )
        result.sets[split] = {
            "captions": len(caption_sets),
            "goal_pairs": len(pair_sets),
            "goal_ranked": len(ranked),
        }
        if not caption_sets:
            result.notes.append(
                f"{split}: no captioned frames (do the predicate intervals match the states?)"
            )

    for i in sorted(keep_all):
        _save_png(out / names[i], frames[i].image)
    with (out / "states.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "image",
                "episode",
                "step",
                "policy",
                "noise",
                "split",
                *predicates.variables,
                "caption",
                "goal_distance",
                "success",
                "terminal",
            ]
        )
        for i in sorted(keep_all):
            f = frames[i]
            w.writerow(
                [
                    names[i],
                    f.episode,
                    f.step,
                    f.policy,
                    f"{f.noise:.3f}",
                    split_of[f.episode],
                    *(f"{v:.6g}" for v in f.state),
                    captions[i] or "",
                    f"{distances[i]:.6g}",
                    "" if f.success is None else int(bool(f.success)),
                    int(f.terminal),
                ]
            )
    result.seconds = time.perf_counter() - t0
    manifest = {
        "config": asdict(cfg),
        "predicates": predicates.source,
        "variables": list(predicates.variables),
        "captions": all_caps,
        "goal": None if goal is None else {"caption": goal.caption, "baseline": goal.baseline},
        "frames": result.frames,
        "episodes": result.episodes,
        "caption_counts": result.caption_counts,
        "sets": result.sets,
        "files": {
            s: {k: os.path.relpath(p, out) for k, p in fs.items()} for s, fs in result.files.items()
        },
        "notes": result.notes,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return result


def validate_config(cfg: RolloutConfig) -> RolloutConfig:
    """Check every setting; each problem is one :class:`ConfigError` line."""
    for name, minimum in (
        ("episodes", 1),
        ("max_steps", 1),
        ("stride", 1),
        ("size", 8),
        ("ranked_size", 2),
    ):
        if getattr(cfg, name) < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {getattr(cfg, name)}")
    for name in ("max_per_caption", "ranked_sets"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.eval_fraction < 1.0 or math.isnan(cfg.eval_fraction):
        raise ConfigError(f"eval_fraction must lie in [0, 1), got {cfg.eval_fraction}")
    if not cfg.out:
        raise ConfigError("out=... is required")
    _parse_policies(cfg.policies)
    _parse_noise(cfg.noise)
    return cfg


USAGE = """usage: python -m vlmrm.tune.rollouts key=value ...

Roll out random and scripted policies in an env, caption frames by predicates of the
env state and write ranked sets / pairs for python -m vlmrm.tune.
Settings (default):
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.tune.rollouts``; returns the exit code."""
    import dataclasses

    from vlmrm.tune.cli import parse_dotlist

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in args):
        print(
            USAGE
            + "\n".join(f"  {f.name}={f.default!r}" for f in dataclasses.fields(RolloutConfig))
        )
        return 0
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        cfg = parse_dotlist(RolloutConfig, args, extra_keys=())
        result = build_rollout_dataset(cfg, say=lambda m: print(m, flush=True))
    except VLMRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    for note in result.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
