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

import importlib
import math
import os
from dataclasses import dataclass
from typing import Any

from vlmrm.checks import check_int
from vlmrm.cli.args import Command, entry_point
from vlmrm.cli.vocabulary import RunSettings
from vlmrm.errors import ConfigError

#: The policy kinds of :data:`vlmrm.envs.controllers.POLICIES` (that package imports torch,
#: so the settings name them here; a test keeps the two equal).
POLICIES = ("random", "scripted")
SPLITS = ("train", "eval")


@dataclass
class RolloutConfig(RunSettings):
    """Every setting of ``python -m vlmrm.tune.rollouts`` (``key=value``)."""

    env: str = "CartPole"
    """Short name (CartPole, MountainCar) or a registered gymnasium id."""
    labels: str = ""
    """Predicate YAML, or a default's name; default: the env's shipped predicates."""
    out: str = "runs/rollouts"
    """Output folder (runs/ is git-ignored)."""
    episodes: int = 200
    """Episodes in all (train + eval)."""
    policies: str = "random,scripted"
    """Episodes go round-robin over these (comma list of random, scripted)."""
    noise: str = "0.0,0.6"
    """Scripted policy: per-episode random-action probability, uniform in [lo, hi] ('p' or 'lo,hi')."""
    max_steps: int = 200
    """Steps per episode at most."""
    stride: int = 2
    """Keep every stride-th frame (consecutive frames are near duplicates)."""
    size: int = 64
    """Frames are square, size x size (vlmrm-tiny: 64; ViT-B-32: 224)."""
    eval_fraction: float = 0.2
    """Fraction of episodes held out (by episode)."""
    max_per_caption: int = 0
    """Cap frames per caption and split (0: no cap), balances classes."""
    ranked_size: int = 4
    """Images per goal-ranking set."""
    ranked_sets: int = 0
    """Goal-ranking sets per split (0: one per ranked_size labelled frames)."""
    overwrite: bool = False
    """Replace an existing dataset in out."""
    progress: bool = True
    """Print what the rollouts did while they run (the final summary is always printed)."""

    def validate(self) -> RolloutConfig:
        """Check every setting (no torch imported); each problem is one :class:`ConfigError` line."""
        for name, minimum in (("episodes", 1), ("max_steps", 1), ("stride", 1), ("size", 8), ("ranked_size", 2)):
            setattr(self, name, check_int(name, getattr(self, name), minimum))
        for name in ("max_per_caption", "ranked_sets"):
            setattr(self, name, check_int(name, getattr(self, name), 0))
        if not 0.0 <= self.eval_fraction < 1.0 or math.isnan(self.eval_fraction):
            raise ConfigError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if not self.out:
            raise ConfigError("out=... is required")
        self.policy_kinds  # noqa: B018 - parse to check
        self.noise_range  # noqa: B018
        return self

    @property
    def policy_kinds(self) -> list[str]:
        """``policies`` as a list of kinds."""
        kinds = [p.strip() for p in str(self.policies).split(",") if p.strip()]
        bad = [k for k in kinds if k not in POLICIES]
        if not kinds or bad:
            raise ConfigError(f"policies must be a comma list of {POLICIES}, got {self.policies!r}")
        return kinds

    @property
    def noise_range(self) -> tuple[float, float]:
        """``noise`` as ``(lo, hi)`` probabilities."""
        text = self.noise
        try:
            vals = [float(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"noise must be 'p' or 'lo,hi' probabilities, got {text!r}") from None
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2 or not all(0.0 <= v <= 1.0 for v in vals) or vals[0] > vals[1]:
            raise ConfigError(f"noise must be 'p' or 'lo,hi' with 0 <= lo <= hi <= 1, got {text!r}")
        return vals[0], vals[1]


COMMAND = Command(
    prog="python -m vlmrm.tune.rollouts",
    settings=RolloutConfig,
    summary=(
        "Roll out random and scripted policies in an env, caption frames by predicates of the "
        "env state and write ranked sets / pairs for python -m vlmrm.tune."
    ),
    examples=(
        "python -m vlmrm.tune.rollouts env=CartPole episodes=300 size=128 max_per_caption=1500 out=runs/data/cartpole",
        "python -m vlmrm.tune.rollouts env=MountainCar labels=examples/mountaincar_predicates.yaml out=runs/data/mc",
    ),
)


def rollouts(cfg: RolloutConfig) -> int:
    """Build the dataset and print its summary."""
    from vlmrm.tune.rollout_dataset import build_rollout_dataset

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    say = (lambda m: print(m, flush=True)) if cfg.progress else None
    result = build_rollout_dataset(cfg, say=say)
    print(result.summary())
    for note in result.notes:
        print(f"note: {note}")
    return 0


main = entry_point(COMMAND, rollouts)

# The library side, importable from here as before (loaded on first use: --help stays light).
_LIBRARY = {
    "RolloutDataset": "vlmrm.tune.rollout_dataset",
    "build_rollout_dataset": "vlmrm.tune.rollout_dataset",
    "RolloutFrame": "vlmrm.tune.rollout_data",
    "goal_ranked_sets": "vlmrm.tune.rollout_data",
    "rollout_frames": "vlmrm.tune.rollout_data",
    "make_policy": "vlmrm.envs.controllers",
}


def __getattr__(name: str) -> Any:
    if name not in _LIBRARY:
        raise AttributeError(f"module 'vlmrm.tune.rollouts' has no attribute {name!r}")
    return getattr(importlib.import_module(_LIBRARY[name]), name)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
