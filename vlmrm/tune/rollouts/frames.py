"""Frames of env rollouts, and the ranked sets made from them (see :mod:`vlmrm.tune.rollouts`).

Rollouts step through :func:`vlmrm.rollout.iter_steps` (the one rollout loop) with the
scripted controllers of :mod:`vlmrm.envs.controllers`; a kept frame always pairs the
render with ``info["state"]`` of the same moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.tune.data.records import RankedSet
from vlmrm.tune.rollouts.predicates import GoalSpec

DEFAULT_POLICIES = ("random", "scripted")


@dataclass
class RolloutFrame:
    """One kept frame: the render and the env state of the same moment."""

    episode: int
    step: int
    policy: str
    noise: float
    state: np.ndarray
    success: bool | None
    terminal: bool
    image: np.ndarray


def _make_env(env_name: str, size: int, max_steps: int):
    from vlmrm.envs import make_env

    try:
        return make_env(env_name, width=size, height=size, episode_length=max_steps)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot make env {env_name!r}: {str(exc).splitlines()[0]}") from None


def rollout_frames(
    env_name: str,
    episodes: int,
    *,
    policies: Sequence[str] = DEFAULT_POLICIES,
    noise: tuple[float, float] = (0.0, 0.6),
    max_steps: int = 200,
    stride: int = 1,
    size: int = 64,
    seed: int = 0,
) -> list[RolloutFrame]:
    """Roll out ``episodes`` episodes (policies round-robin) and keep every ``stride``-th frame.

    A frame is the render after ``reset`` or after a step, with the ``info["state"]``
    of that moment, so image and state always agree. The frame after the last step is
    kept too (CartPole: the pole just past falling — a useful "far from goal" example).
    A scripted episode draws its random-action probability uniformly from ``noise``.
    """
    from vlmrm.envs.controllers import make_policy
    from vlmrm.rollout import iter_steps

    env = _make_env(env_name, size, max_steps)
    rng = np.random.default_rng(seed)
    keep = lambda episode, t, done: t % stride == 0 or done  # noqa: E731
    frames: list[RolloutFrame] = []
    try:
        for ep in range(episodes):
            kind = policies[ep % len(policies)]
            eps = float(rng.uniform(*noise)) if kind == "scripted" else 1.0
            policy = make_policy(kind, env, rng, eps)
            for step in iter_steps(env, policy, 1, seed=int(rng.integers(2**31)), render=keep):
                if step.is_reset and "state" not in step.info:
                    raise ConfigError(
                        f"env {env_name!r} puts no 'state' in info; rollouts need info['state'] "
                        "(the vlmrm.envs environments provide it)"
                    )
                if step.frame is None:
                    continue
                frames.append(
                    RolloutFrame(
                        episode=ep, step=step.t, policy=kind, noise=eps,
                        state=np.asarray(step.info["state"], dtype=np.float64).copy(),
                        success=step.info.get("success"), terminal=step.done,
                        image=np.asarray(step.frame, dtype=np.uint8).copy(),
                    )
                )
    finally:
        env.close()
    return frames


def split_episodes(
    frames: Sequence[RolloutFrame], eval_fraction: float, rng: np.random.Generator
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


def cap_per_caption(
    idx: list[int], captions: list[str | None], cap: int, rng: np.random.Generator
) -> list[int]:
    """At most ``cap`` frames of each caption (0: all), drawn from ``rng``; balances classes."""
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


def caption_sets(
    frames: Sequence[RolloutFrame], idx: Sequence[int], paths: dict[int, str], names: Sequence[str],
    captions: Sequence[str | None], all_captions: Sequence[str],
) -> list[RankedSet]:
    """Image-anchored sets: the frame's true caption first, every other caption tied below it."""
    sets = []
    for i in idx:
        true = captions[i]
        others = [c for c in all_captions if c != true]
        if true is None or not others:
            continue
        sets.append(
            RankedSet(
                anchor=paths[i],
                candidates=(true, *others),
                ranks=(0, *([1] * len(others))),
                group=f"ep{frames[i].episode}",
                id=f"{Path(names[i]).stem}/caption",
            )
        )
    return sets


def goal_pair_sets(
    frames: Sequence[RolloutFrame], idx: Sequence[int], paths: dict[int, str], names: Sequence[str],
    distances: np.ndarray, goal: GoalSpec,
) -> list[RankedSet]:
    """Goal-vs-baseline pairs: near frames prefer the goal caption, far ones the baseline."""
    sets = []
    for i in idx:
        d = distances[i]
        if d <= goal.near:
            pref = (goal.caption, goal.baseline)
        elif d >= goal.far:
            pref = (goal.baseline, goal.caption)
        else:
            continue
        sets.append(
            RankedSet(
                anchor=paths[i],
                candidates=pref,
                group=f"ep{frames[i].episode}",
                id=f"{Path(names[i]).stem}/goal",
            )
        )
    return sets
