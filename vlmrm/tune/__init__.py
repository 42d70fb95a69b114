"""Preference tuning of a CLIP reward model.

* :mod:`vlmrm.tune.data` — ranked image–caption sets and pairs (JSONL), ranking → pairs,
  a hard-negative builder (flip, colour, relation swaps, retrieval) and a VSR loader;
* :mod:`vlmrm.tune.losses` — DPO (label smoothing), IPO, hinge, Bradley–Terry,
  Plackett–Luce, CLIP contrastive and REINFORCE losses on ``s = τ·cos``;
* :mod:`vlmrm.tune.trainer` — the trainer behind ``python -m vlmrm.tune``;
* :mod:`vlmrm.tune.evaluate` — balanced preference accuracy, VSR accuracy, probe rewards.

A tuned checkpoint is a plain open_clip state dict:
``vlmrm.load_clip("ARCH", pretrained="runs/tune/model.safetensors")``.
"""

from vlmrm.tune.data import (
    PreferencePair,
    RankedSet,
    VSRExample,
    build_ranked_sets,
    load_pairs,
    load_ranked_sets,
    load_vsr,
    ranking_to_pairs,
    swap_relations,
    write_ranked_sets,
)
from vlmrm.tune.evaluate import evaluate_model, pairwise_accuracy, probe_rewards, vsr_accuracy
from vlmrm.tune.losses import (
    bradley_terry_loss,
    clip_contrastive_loss,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    plackett_luce_loss,
    reinforce_loss,
)
from vlmrm.tune.trainer import TuneConfig, TuneResult, train

__all__ = [
    "PreferencePair",
    "RankedSet",
    "TuneConfig",
    "TuneResult",
    "VSRExample",
    "bradley_terry_loss",
    "build_ranked_sets",
    "clip_contrastive_loss",
    "dpo_loss",
    "evaluate_model",
    "hinge_loss",
    "ipo_loss",
    "load_pairs",
    "load_ranked_sets",
    "load_vsr",
    "pairwise_accuracy",
    "plackett_luce_loss",
    "probe_rewards",
    "ranking_to_pairs",
    "reinforce_loss",
    "swap_relations",
    "train",
    "vsr_accuracy",
    "write_ranked_sets",
]
