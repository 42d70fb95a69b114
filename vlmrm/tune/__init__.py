"""Preference tuning of a CLIP reward model.

* :mod:`vlmrm.tune.data` — ranked image–caption sets and pairs (JSONL), ranking → pairs,
  a hard-negative builder (flip, colour, relation swaps, retrieval) and a VSR loader;
* :mod:`vlmrm.tune.losses` — DPO (label smoothing), IPO, hinge, Bradley–Terry,
  Plackett–Luce, CLIP contrastive and REINFORCE losses on ``s = τ·cos``;
* :mod:`vlmrm.tune.trainer` — the trainer behind ``python -m vlmrm.tune``;
* :mod:`vlmrm.tune.evaluate` — balanced preference accuracy, VSR accuracy, probe rewards.

A tuned checkpoint is a plain open_clip state dict:
``vlmrm.load_clip("ARCH", pretrained="runs/tune/model.safetensors")``.

The names below are imported on first use (module ``__getattr__``), so the command
modules of this package answer ``--help`` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "PreferencePair": "records",
    "RankedSet": "records",
    "VSRExample": "records",
    "load_pairs": "records",
    "load_ranked_sets": "records",
    "ranking_to_pairs": "records",
    "write_ranked_sets": "records",
    "build_ranked_sets": "build_sets",
    "swap_relations": "augment",
    "load_vsr": "vsr",
    "evaluate_model": "evaluate",
    "pairwise_accuracy": "evaluate",
    "probe_rewards": "evaluate",
    "vsr_accuracy": "evaluate",
    "bradley_terry_loss": "losses",
    "clip_contrastive_loss": "losses",
    "dpo_loss": "losses",
    "hinge_loss": "losses",
    "ipo_loss": "losses",
    "plackett_luce_loss": "losses",
    "reinforce_loss": "losses",
    "TuneConfig": "settings",
    "TuneResult": "report",
    "train": "trainer",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'vlmrm.tune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vlmrm.tune.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
