"""Hard-negative edits of captions and images: relation, left/right and colour swaps.

Swaps are whole-word (``"left"`` never matches inside ``"cleft"``) and case-preserving;
an image edit and its caption edit always go together (a horizontal flip mirrors left and
right and nothing else; the colour edit is an R↔B channel permutation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

# the names of the edits below; the settings check `augment=` against them
from vlmrm.tune.settings import AUGMENTATIONS as AUGMENTATIONS

# --------------------------------------------------------------------------- word swaps

# A horizontal flip mirrors left and right and nothing else.
FLIP_SWAPS: dict[str, str] = {
    "left": "right",
    "leftmost": "rightmost",
    "left-hand": "right-hand",
    "lefthand": "righthand",
    "leftward": "rightward",
    "leftwards": "rightwards",
}

# Spatial relations and their opposites (used both ways). Multi-word phrases are matched
# as whole phrases and before their parts ("on top of" before "top").
RELATION_SWAPS: dict[str, str] = {
    **FLIP_SWAPS,
    "above": "below",
    "over": "under",
    "on top of": "beneath",
    "at the top of": "at the bottom of",
    "upper": "lower",
    "higher than": "lower than",
    "in front of": "behind",
    "inside": "outside",
    "into": "out of",
    "near": "far from",
    "close to": "far away from",
    "toward": "away from",
    "towards": "away from",
    "facing": "facing away from",
    "ahead of": "behind",
}

# Colour jitter used as a hard negative is a channel permutation R↔B: it maps pure red to
# pure blue and yellow to cyan, and leaves these colours unchanged. A caption naming any
# other colour cannot be rewritten to match the jittered image, so it is skipped.
COLOR_SWAPS: dict[str, str] = {"red": "blue", "yellow": "cyan"}
COLOR_INVARIANT: frozenset[str] = frozenset(
    {"green", "white", "black", "gray", "grey", "purple", "magenta", "silver"}
)
COLOR_UNMAPPED: frozenset[str] = frozenset(
    {"orange", "brown", "pink", "gold", "golden", "tan", "beige", "navy", "teal", "turquoise",
     "violet", "maroon", "lime", "olive", "azure", "lavender", "crimson", "blond", "blonde"}
)

_BOUNDARY_L = r"(?<![\w'-])"
_BOUNDARY_R = r"(?![\w'-])"


def _symmetric(table: Mapping[str, str]) -> dict[str, str]:
    """Both directions of a swap table; the first mapping given for a phrase wins."""
    out: dict[str, str] = {}
    for a, b in table.items():
        out.setdefault(a.lower(), b.lower())
    for a, b in table.items():
        out.setdefault(b.lower(), a.lower())
    return out


def _match_case(src: str, dst: str) -> str:
    if src.isupper() and len(src) > 1:
        return dst.upper()
    if src[:1].isupper():
        return dst[:1].upper() + dst[1:]
    return dst


_PATTERN_CACHE: dict[tuple[tuple[str, str], ...], tuple[re.Pattern[str], dict[str, str]]] = {}


def _compiled(table: Mapping[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    key = tuple(sorted(table.items()))
    hit = _PATTERN_CACHE.get(key)
    if hit is None:
        sym = _symmetric(table)
        phrases = sorted(sym, key=len, reverse=True)
        alts = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in phrases)
        pattern = re.compile(f"{_BOUNDARY_L}(?:{alts}){_BOUNDARY_R}", re.IGNORECASE)
        hit = (pattern, sym)
        _PATTERN_CACHE[key] = hit
    return hit


def swap_words(text: str, table: Mapping[str, str]) -> str:
    """Swap whole words/phrases of ``text`` by ``table`` (both directions), simultaneously.

    Whole words only: a match may not touch a letter, digit, ``_``, ``'`` or ``-`` on
    either side, so "left" never rewrites "cleft", "lefty" or "left-over" (but the
    table's own "left-hand" is a phrase). Swaps happen in one pass, so "left … right"
    becomes "right … left", and the capitalisation of the matched word is kept.
    Word sense is not checked: "the right answer" or "she left" are swapped too, so
    check captions of that kind, or pass a narrower table.
    """
    pattern, sym = _compiled(table)

    def repl(m: re.Match[str]) -> str:
        src = m.group(0)
        return _match_case(src, sym[" ".join(src.lower().split())])

    return pattern.sub(repl, text)


def swap_relations(text: str, table: Mapping[str, str] | None = None) -> str:
    """Replace each spatial relation by its opposite (``RELATION_SWAPS`` by default)."""
    return swap_words(text, RELATION_SWAPS if table is None else table)


def flip_caption(text: str) -> str:
    """The caption of the horizontally flipped image: left ↔ right words swapped."""
    return swap_words(text, FLIP_SWAPS)


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


def color_caption(text: str) -> str | None:
    """Caption of the R↔B channel-swapped image, or ``None`` when a colour word has no
    known image (see ``COLOR_SWAPS``)."""
    if _words(text) & COLOR_UNMAPPED:
        return None
    return swap_words(text, COLOR_SWAPS)


def flip_image(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img[:, ::-1])


def color_swap_image(img: np.ndarray) -> np.ndarray:
    """The colour jitter whose effect on colour words is known: swap red and blue channels."""
    return np.ascontiguousarray(img[..., ::-1])


def relation_of(caption: str, relation: str) -> str | None:
    """``caption`` with its (whole-phrase) ``relation`` replaced by the opposite relation,
    or ``None`` when the relation has no opposite in the table or is not in the caption."""
    opposite = swap_relations(relation)
    if opposite.lower() == relation.lower():
        return None
    words = relation.split()
    if not words:
        return None
    pat = re.compile(
        _BOUNDARY_L + r"\s+".join(re.escape(w) for w in words) + _BOUNDARY_R, re.IGNORECASE
    )
    swapped, n = pat.subn(lambda m: _match_case(m.group(0), opposite), caption, count=1)
    return swapped if n else None

