"""Preference data for tuning CLIP, in one namespace: records, edits, VSR and the builder.

The pieces live in their own modules; this one gathers their public names so that
``from vlmrm.tune.data import ...`` keeps working:

* :mod:`vlmrm.tune.records` — ranked sets and pairs (JSONL), ranking → pairs, splits;
* :mod:`vlmrm.tune.augment` — relation, left/right and colour swaps of captions and images;
* :mod:`vlmrm.tune.vsr` — image–caption rows, VSR rows, the decoded-image cache;
* :mod:`vlmrm.tune.build_sets` — ranked sets with hard negatives from image–caption pairs.
"""

from vlmrm.tune.augment import (
    AUGMENTATIONS,
    COLOR_INVARIANT,
    COLOR_SWAPS,
    COLOR_UNMAPPED,
    FLIP_SWAPS,
    RELATION_SWAPS,
    color_caption,
    color_swap_image,
    flip_caption,
    flip_image,
    relation_of,
    swap_relations,
    swap_words,
)
from vlmrm.tune.build_sets import BuildStats, build_ranked_sets, retrieve_negatives
from vlmrm.tune.records import (
    AnchorKind,
    PreferencePair,
    RankedSet,
    VSRExample,
    load_pairs,
    load_ranked_sets,
    parse_record,
    ranked_set_to_json,
    ranking_to_pairs,
    read_jsonl,
    split_sets,
    write_ranked_sets,
)
from vlmrm.tune.settings import PAIR_MODES, PAIR_WEIGHTINGS
from vlmrm.tune.vsr import ImageCache, load_image_captions, load_vsr

__all__ = [
    "AUGMENTATIONS", "COLOR_INVARIANT", "COLOR_SWAPS", "COLOR_UNMAPPED", "FLIP_SWAPS",
    "PAIR_MODES", "PAIR_WEIGHTINGS", "RELATION_SWAPS", "AnchorKind", "BuildStats",
    "ImageCache", "PreferencePair", "RankedSet", "VSRExample", "build_ranked_sets",
    "color_caption", "color_swap_image", "flip_caption", "flip_image", "load_image_captions",
    "load_pairs", "load_ranked_sets", "load_vsr", "parse_record", "ranked_set_to_json",
    "ranking_to_pairs", "read_jsonl", "relation_of", "retrieve_negatives", "split_sets",
    "swap_relations", "swap_words", "write_ranked_sets",
]
