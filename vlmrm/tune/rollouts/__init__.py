"""A tuning dataset from rollouts of the user's own env: ``python -m vlmrm.tune.rollouts``
(its :mod:`__main__`) collects frames and captions them with predicates of the env state.

* :mod:`.settings` — :class:`~.settings.RolloutSettings` (torch-free);
* :mod:`.predicates` — caption predicates: env state → captions and goal distances;
* :mod:`.frames` — stepping the env (through :func:`vlmrm.rollout.iter_steps`, the one
  rollout loop) into frames, and the ranked sets made of them;
* :mod:`.dataset` — writing the dataset: per-split JSONL, frames, states, manifest.

"Rollout" alone means the loop of :mod:`vlmrm.rollout`; everything here is about turning
its frames into data for tuning.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    ".__main__": ("COMMAND", "main", "rollouts"),  # the command; its body runs a settings object
    ".settings": ("RolloutSettings",),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
