"""The VSR relations: each one's opposite (for the swap decision) and meta-category.

The swap decider asks whether a caption outscores its twin with the relation replaced
by an opposite one. The twin must be false whenever the caption is true, so an
"opposite" here is a relation that excludes the original for the same two objects:
a mirror ("left of" / "right of"), a converse that cannot hold at once ("contains" /
"inside"), or a negation ("touching" / "detached from"). Relations with no such
partner ("with", "among", "between", "at", ...) map to ``None`` and are counted, not
guessed.

Meta-categories are the seven groups of the VSR paper (Liu et al., 2023, Table 1).
"""

from __future__ import annotations

import re

#: VSR's reported human accuracy (%), printed beside ours.
HUMAN_ACCURACY = 95.4
#: CLIP's accuracy reported for VSR (%, around chance), for the VSR section of docs/tuning.md.
CLIP_REPORTED_ACCURACY = 56.0

#: relation → an excluding relation, or None when VSR's relation has none.
VSR_OPPOSITES: dict[str, str | None] = {
    # Adjacency
    "adjacent to": "far away from",
    "alongside": "far away from",
    "at the side of": "far away from",
    "at the right side of": "at the left side of",
    "at the left side of": "at the right side of",
    "attached to": "detached from",
    "at the back of": "in front of",
    "ahead of": "behind",
    "against": "away from",
    "at the edge of": "in the middle of",
    # Directional
    "off": "on",
    "past": "toward",
    "toward": "away from",
    "down": "up",
    "away from": "toward",
    "along": "across",
    "around": None,
    "into": "out of",
    "across": "along",
    "across from": "next to",
    "down from": "up from",
    # Orientation
    "facing": "facing away from",
    "facing away from": "facing",
    "parallel to": "perpendicular to",
    "perpendicular to": "parallel to",
    # Projective
    "on top of": "beneath",
    "beneath": "on top of",
    "beside": "far away from",
    "behind": "in front of",
    "left of": "right of",
    "right of": "left of",
    "under": "over",
    "in front of": "behind",
    "below": "above",
    "above": "below",
    "over": "under",
    "in the middle of": "at the edge of",
    # Proximity
    "by": "far away from",
    "close to": "far away from",
    "near": "far from",
    "far from": "near",
    "far away from": "close to",
    # Topological
    "connected to": "detached from",
    "detached from": "attached to",
    "has as a part": "part of",
    "part of": "has as a part",
    "contains": "inside",
    "within": "outside",
    "at": None,
    "on": "under",
    "in": "out of",
    "with": None,
    "surrounding": "inside",
    "among": None,
    "consists of": "part of",
    "out of": "in",
    "between": None,
    "inside": "outside",
    "outside": "inside",
    "touching": "detached from",
    # Unallocated
    "beyond": "in front of",
    "next to": "far away from",
    "opposite to": "next to",
    "enclosed by": "outside",
}

META_CATEGORIES: dict[str, tuple[str, ...]] = {
    "adjacency": ("adjacent to", "alongside", "at the side of", "at the right side of",
                  "at the left side of", "attached to", "at the back of", "ahead of", "against",
                  "at the edge of"),
    "directional": ("off", "past", "toward", "down", "away from", "along", "around", "into",
                    "across", "across from", "down from"),
    "orientation": ("facing", "facing away from", "parallel to", "perpendicular to"),
    "projective": ("on top of", "beneath", "beside", "behind", "left of", "right of", "under",
                   "in front of", "below", "above", "over", "in the middle of"),
    "proximity": ("by", "close to", "near", "far from", "far away from"),
    "topological": ("connected to", "detached from", "has as a part", "part of", "contains",
                    "within", "at", "on", "in", "with", "surrounding", "among", "consists of",
                    "out of", "between", "inside", "outside", "touching"),
    "unallocated": ("beyond", "next to", "opposite to", "enclosed by"),
}  # fmt: skip

_CATEGORY_OF = {r: c for c, rels in META_CATEGORIES.items() for r in rels}


def normalize_relation(relation: str) -> str:
    """Lower case, single spaces: the key of the tables above."""
    return " ".join(relation.lower().split())


def meta_category(relation: str) -> str:
    """The VSR meta-category of ``relation`` (``"other"`` for a relation outside VSR's 66)."""
    return _CATEGORY_OF.get(normalize_relation(relation), "other")


def opposite_relation(relation: str) -> str | None:
    """The excluding relation of a VSR relation, falling back to the word-swap table."""
    key = normalize_relation(relation)
    if key in VSR_OPPOSITES:
        return VSR_OPPOSITES[key]
    from vlmrm.tune.data.augment import swap_relations

    swapped = swap_relations(key)
    return None if swapped == key else swapped


def swap_caption(caption: str, relation: str) -> str | None:
    """``caption`` with its relation phrase replaced by the opposite one (first match, whole
    words, case kept), or ``None`` when the relation has no opposite or is not in the caption."""
    opposite = opposite_relation(relation)
    words = normalize_relation(relation).split()
    if opposite is None or not words:
        return None
    pat = re.compile(r"(?<![\w'-])" + r"\s+".join(re.escape(w) for w in words) + r"(?![\w'-])", re.IGNORECASE)

    def repl(m: re.Match[str]) -> str:
        src = m.group(0)
        return opposite[:1].upper() + opposite[1:] if src[:1].isupper() else opposite

    swapped, n = pat.subn(repl, caption, count=1)
    return swapped if n else None


def vsr_preference_sets(examples: list, false_rows: bool = True) -> tuple[list, dict[str, int]]:
    """Ranked sets of two from VSR rows: the true caption over its relation-swapped twin.

    A true row prefers its caption (unmodified) over the twin (modified); with
    ``false_rows``, a false row prefers the twin — the relation's opposite, true when
    the original is false for mirror pairs such as left/right, above/below — so the
    data holds both directions of edit and evaluation can cancel the "prefer the
    unmodified caption" shortcut. Sets are grouped by image (one split side per image).
    Returns the sets and counts: ``rows``, ``sets``, ``no_opposite``, ``false_skipped``.
    """
    from vlmrm.tune.data.records import RankedSet

    sets, counts = [], {"rows": len(examples), "sets": 0, "no_opposite": 0, "false_skipped": 0}
    for k, e in enumerate(examples):
        twin = swap_caption(e.caption, e.relation)
        if twin is None:
            counts["no_opposite"] += 1
            continue
        if not e.label and not false_rows:
            counts["false_skipped"] += 1
            continue
        cands, modified = ((e.caption, twin), (False, True)) if e.label else ((twin, e.caption), (True, False))
        sets.append(RankedSet(e.image, cands, modified=modified, group=e.image, id=f"vsr/{k}"))
    counts["sets"] = len(sets)
    return sets, counts
