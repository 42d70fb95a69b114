"""Tuning a CLIP reward model: preference tuning, fine-tuning, and the data and metrics of both.

Each sub-package is one concept; the layers run data → objectives → commands (checked by the
import contracts in ``pyproject.toml``):

* :mod:`vlmrm.tune.data` — preference records (ranked sets, pairs; JSONL), caption and image
  edits, ranked sets with hard negatives, image–caption datasets, the image cache;
* :mod:`vlmrm.tune.vsr` — VSR rows, its relations (opposites, meta-categories) and pairs;
* :mod:`vlmrm.tune.objectives` — the losses (DPO, IPO, hinge, Bradley–Terry, Plackett–Luce,
  contrastive, REINFORCE), the scorer they differentiate through, the objective wiring;
* :mod:`vlmrm.tune.eval` — preference, VSR and retrieval metrics, and
  ``python -m vlmrm.tune.eval``, which reports them for any checkpoint;
* :mod:`vlmrm.tune.finetune` — ``python -m vlmrm.tune.finetune``: CLIP fine-tuning on
  image–caption data (supervised, RL, WiSE-FT) with resumable checkpoints;
* :mod:`vlmrm.tune.rollouts` — ``python -m vlmrm.tune.rollouts``: a tuning dataset from the
  frames of env rollouts, captioned by predicates of the env state.

At the top lives preference tuning itself, ``python -m vlmrm.tune``: :mod:`.cli` (the
command), :mod:`.settings` (the settings of the top commands and the vocabulary of tuning),
:mod:`.run_data` (the data of one run), :mod:`.trainer`, :mod:`.checkpoint` (its resumable
checkpoints) and :mod:`.report` (what a tuning run reports); and the two data commands whose
``python -m`` paths are here: :mod:`.build` and :mod:`.vsr_pairs`.

A tuned checkpoint is a plain open_clip state dict:
``vlmrm.load_clip("ARCH", pretrained="runs/tune/model.safetensors")``.

The names below are imported on first use (module ``__getattr__``), so the command
modules of this package answer ``--help`` without importing torch.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    ".data.records": (
        "PreferencePair", "RankedSet", "VSRExample", "load_pairs", "load_ranked_sets",
        "ranking_to_pairs", "write_ranked_sets",
    ),
    ".data.ranked_sets": ("build_ranked_sets",),
    ".data.augment": ("swap_relations",),
    ".data.captions": ("CaptionedImage", "load_caption_data", "split_by_image"),
    ".vsr.rows": ("load_vsr",),
    ".vsr.relations": ("VSR_OPPOSITES", "swap_caption", "vsr_preference_sets"),
    ".eval.metrics": ("evaluate_model", "pairwise_accuracy", "probe_rewards", "vsr_accuracy"),
    ".eval.retrieval": ("recall_at_k", "retrieval_metrics"),
    ".objectives.losses": (
        "bradley_terry_loss", "clip_contrastive_loss", "dpo_loss", "hinge_loss", "ipo_loss",
        "plackett_luce_loss", "reinforce_loss",
    ),
    ".settings": ("TuneSettings",),
    ".report": ("TuneResult",),
    ".trainer": ("train",),
    ".finetune.run": ("fine_tune",),
}
#: Old names of the settings classes: importable, not listed in ``__all__``.
_ALIASES = {"vlmrm.tune.settings": ("TuneConfig",)}

__all__ = sorted(name for names in _HOMES.values() for name in names)


__getattr__, __dir__ = lazy_attributes(__name__, {**_HOMES, **_ALIASES})
