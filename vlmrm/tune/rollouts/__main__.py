"""``python -m vlmrm.tune.rollouts`` — a tuning dataset from rollouts of the user's own env.

When a zero-shot CLIP gives a badly shaped reward for an environment, the way out that
stays language-driven is to fine-tune the reward CLIP on frames of that environment,
captioned by simple predicates of the env state (see :mod:`vlmrm.tune.rollouts.predicates`), and
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

import os

from vlmrm.cli.args import Command, entry_point
from vlmrm.tune.rollouts.settings import POLICIES, SPLITS, RolloutSettings

__all__ = ["COMMAND", "POLICIES", "SPLITS", "RolloutSettings", "main"]


COMMAND = Command(
    prog="python -m vlmrm.tune.rollouts",
    settings=RolloutSettings,
    summary=(
        "Roll out random and scripted policies in an env, caption frames by predicates of the "
        "env state and write ranked sets / pairs for python -m vlmrm.tune."
    ),
    examples=(
        "python -m vlmrm.tune.rollouts env=CartPole episodes=300 size=128 max_per_caption=1500 out=runs/data/cartpole",
        "python -m vlmrm.tune.rollouts env=MountainCar labels=examples/mountaincar_predicates.yaml out=runs/data/mc",
    ),
)


def rollouts(cfg: RolloutSettings) -> int:
    """Build the dataset and print its summary."""
    from vlmrm.tune.rollouts.dataset import build_rollout_dataset

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    say = (lambda m: print(m, flush=True)) if cfg.progress else None
    result = build_rollout_dataset(cfg, say=say)
    print(result.summary())
    for note in result.notes:
        print(f"note: {note}")
    return 0


main = entry_point(COMMAND, rollouts)

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
