"""What tuning minimises: the losses, the scorer they differentiate through, and the wiring
of a ``loss=`` setting to a batch.

* :mod:`.losses` — DPO (label smoothing), IPO, hinge, Bradley–Terry, Plackett–Luce,
  listwise DPO, CLIP contrastive and REINFORCE (through :mod:`vlmrm.policy_gradient`) on
  ``s = τ·cos``;
* :mod:`.scorer` — the differentiable scorer, the trainable parameters, the learning-rate
  schedule and the seeded batch order;
* :mod:`.objective` — the objective of one batch (and of the eval split) for each ``loss=``.

Both trainers (``python -m vlmrm.tune`` and ``python -m vlmrm.tune.finetune``) build on
these; the objectives read :mod:`vlmrm.tune.data` and import no command.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    # ``vlmrm.tune.objectives`` was the module of the objective wiring before it was a package
    ".objective": ("Objective", "Stats", "eval_loss", "pairwise_loss"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
