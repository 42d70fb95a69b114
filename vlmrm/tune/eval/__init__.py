"""Evaluating a CLIP reward model: the metrics every tuning command reports, and
``python -m vlmrm.tune.eval`` (its :mod:`__main__`), which reports them for any checkpoint.

* :mod:`.metrics` — balanced preference accuracy, listwise top-1, VSR accuracy (per
  relation and meta-category) and the zero-shot probe;
* :mod:`.retrieval` — image–text Recall@K and matching accuracy;
* :mod:`.settings` — :class:`~.settings.EvalSettings`, the command's settings (torch-free);
* :mod:`.run` — the command's work: load the models, score every held-out set, report.

The preference trainer and the fine-tuner score with :mod:`.metrics` and :mod:`.retrieval`,
so what they log during training is what this command measures afterwards.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    ".__main__": ("COMMAND", "body", "main"),  # the command; its body runs a settings object
    ".settings": ("EvalSettings",),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
