"""Preference tuning of a CLIP reward model.

* :mod:`vlmrm.tune.data` — ranked image–caption sets and pairs (JSONL), ranking → pairs,
  a hard-negative builder (flip, colour, relation swaps, retrieval) and a VSR loader;
* :mod:`vlmrm.tune.losses` — DPO (label smoothing), IPO, hinge, Bradley–Terry,
  Plackett–Luce, CLIP contrastive and REINFORCE losses on ``s = τ·cos``;
* :mod:`vlmrm.tune.trainer` — the trainer behind ``python -m vlmrm.tune``;
* :mod:`vlmrm.tune.evaluate` — balanced preference accuracy, VSR accuracy, probe rewards;
* :mod:`vlmrm.tune.finetune_run` — CLIP fine-tuning on image–caption data
  (``python -m vlmrm.tune.finetune``), :mod:`vlmrm.tune.finetune_checkpoint` its resumable
  checkpoints, :mod:`vlmrm.tune.caption_data` its readers and split,
  :mod:`vlmrm.tune.retrieval` Recall@K; ``python -m vlmrm.tune.eval`` evaluates any
  checkpoint; :mod:`vlmrm.tune.vsr_relations` VSR's relations, their opposites and categories.

A tuned checkpoint is a plain open_clip state dict:
``vlmrm.load_clip("ARCH", pretrained="runs/tune/model.safetensors")``.

The names below are imported on first use (module ``__getattr__``), so the command
modules of this package answer ``--help`` without importing torch.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    ".records": (
        "PreferencePair", "RankedSet", "VSRExample", "load_pairs", "load_ranked_sets",
        "ranking_to_pairs", "write_ranked_sets",
    ),
    ".build_sets": ("build_ranked_sets",),
    ".augment": ("swap_relations",),
    ".vsr": ("load_vsr",),
    ".evaluate": ("evaluate_model", "pairwise_accuracy", "probe_rewards", "vsr_accuracy"),
    ".losses": (
        "bradley_terry_loss", "clip_contrastive_loss", "dpo_loss", "hinge_loss", "ipo_loss",
        "plackett_luce_loss", "reinforce_loss",
    ),
    ".settings": ("TuneConfig",),
    ".report": ("TuneResult",),
    ".trainer": ("train",),
    ".caption_data": ("CaptionedImage", "load_caption_data", "split_by_image"),
    ".retrieval": ("recall_at_k", "retrieval_metrics"),
    ".finetune_run": ("fine_tune",),
    ".vsr_relations": ("VSR_OPPOSITES", "swap_caption", "vsr_preference_sets"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)


__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
