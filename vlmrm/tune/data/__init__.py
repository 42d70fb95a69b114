"""The data of tuning: what a preference record is, and how image–caption data becomes one.

Everything here reads or writes files and arrays; nothing trains, so every command of
:mod:`vlmrm.tune` builds on it and it imports none of them:

* :mod:`.records` — ranked sets and pairs (JSONL), ranking → pairs, splits by group;
* :mod:`.augment` — relation, left/right and colour swaps of captions and images;
* :mod:`.ranked_sets` — ranked sets with hard negatives from image–caption pairs
  (what ``python -m vlmrm.tune.build`` writes);
* :mod:`.captions` — image–caption datasets for fine-tuning and their seeded split by image;
* :mod:`.images` — image–caption rows and the decoded-image cache.

The names below are imported on first use, so ``from vlmrm.tune.data import ...`` of any
of them keeps working without importing the rest.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_HOMES = {
    ".augment": (
        "AUGMENTATIONS", "COLOR_INVARIANT", "COLOR_SWAPS", "COLOR_UNMAPPED", "FLIP_SWAPS",
        "RELATION_SWAPS", "color_caption", "color_swap_image", "flip_caption", "flip_image",
        "relation_of", "swap_relations", "swap_words",
    ),
    ".ranked_sets": ("BuildStats", "build_ranked_sets", "retrieve_negatives"),
    ".records": (
        "AnchorKind", "PreferencePair", "RankedSet", "VSRExample", "load_pairs",
        "load_ranked_sets", "parse_record", "ranked_set_to_json", "ranking_to_pairs",
        "read_jsonl", "split_sets", "write_ranked_sets",
    ),
    ".images": ("ImageCache", "load_image_captions"),
    "vlmrm.tune.vsr.rows": ("load_vsr",),
    "vlmrm.tune.settings": ("PAIR_MODES", "PAIR_WEIGHTINGS"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _HOMES)
