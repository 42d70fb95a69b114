"""VSR (Visual Spatial Reasoning): its rows, its relations, and the preference data made of them.

VSR is used two ways, and both go through this package: as an evaluation (accuracy per
relation and meta-category, with a caption's relation-swapped twin as the decider) and as
training data (``python -m vlmrm.tune.vsr_pairs``: each row against its swapped twin).

* :mod:`.rows` — reading VSR JSONL rows;
* :mod:`.relations` — each relation's excluding opposite, its meta-category, the swap.

It sits on :mod:`vlmrm.tune.data` (records, caption edits) and below the objectives and
commands.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    ".rows": ("load_vsr",),
    ".relations": (
        "HUMAN_ACCURACY", "VSR_OPPOSITES", "meta_category", "normalize_relation",
        "opposite_relation", "swap_caption", "vsr_preference_sets",
    ),
    # read through this package before it was one (``vlmrm.tune.vsr`` was a module)
    "vlmrm.tune.data.images": ("ImageCache", "load_image_captions"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
