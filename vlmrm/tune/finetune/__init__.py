"""CLIP fine-tuning on image–caption data: ``python -m vlmrm.tune.finetune`` (its
:mod:`__main__`), a supervised and/or an RL stage with validation, WiSE-FT and resume.

* :mod:`.settings` — :class:`~.settings.FinetuneSettings` (torch-free: ``--help`` and bad
  values answer at once);
* :mod:`.run` — the fine-tuner: split, epochs, validation, the best checkpoint, the test;
* :mod:`.checkpoint` — its resumable checkpoints (units of :mod:`vlmrm.runtime.units`).

The data comes from :mod:`vlmrm.tune.data.captions`, the losses and scorer from
:mod:`vlmrm.tune.objectives`, the test metrics from :mod:`vlmrm.tune.eval.retrieval`.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    ".__main__": ("COMMAND", "body", "main"),  # the command; its body runs a settings object
    ".settings": ("FinetuneSettings",),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
