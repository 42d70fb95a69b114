"""Preference data for tuning CLIP: ranked image–caption sets, pairs, and VSR.

File format (JSONL, one object per line; image paths are relative to the file's folder
unless absolute or an ``image_root`` is given):

* a **ranked set** anchored on an image — captions best first::

    {"image": "img/0.png", "captions": ["a cat left of a dog", "a cat right of a dog"],
     "ranks": [0, 1], "modified": [false, true], "group": "0", "id": "0/orig"}

* a **ranked set** anchored on a caption — images best first::

    {"caption": "a red cube", "images": ["red.png", "blue.png", "green.png"]}

* a **preference pair** (read as a ranked set of two)::

    {"image": "x.png", "chosen": "a red cube", "rejected": "a blue cube", "weight": 2.0}
    {"caption": "a red cube", "chosen": "red.png", "rejected": "blue.png"}

Optional fields: ``ranks`` (non-decreasing integers, equal ranks are ties and give no
pair; default ``0..K-1``), ``modified`` (one flag per candidate: was it produced by
editing a caption / an image? Evaluation uses it to cancel the "prefer the unmodified
caption" shortcut), ``weight`` (> 0), ``group`` (items with one group land in the same
train/eval split, e.g. an image and its flipped copy), ``id``; for pairs
``chosen_modified`` / ``rejected_modified``.

Rankings become pairs with :func:`ranking_to_pairs` (top-vs-rest, all ordered pairs or
adjacent ranks, optionally weighted by rank gap). :func:`build_ranked_sets` makes ranked
sets from image–caption data; :func:`swap_relations` is its whole-word relation swap.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vlmrm.errors import ConfigError

AnchorKind = Literal["image", "text"]
PAIR_MODES = ("top", "all", "adjacent")
PAIR_WEIGHTINGS = ("none", "gap")
AUGMENTATIONS = ("flip", "color", "relation")

# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RankedSet:
    """One anchor (an image or a caption) and 2+ candidates, best first.

    ``candidates`` are captions for an image anchor and image paths for a caption
    anchor. ``ranks[i]`` is the rank of candidate ``i`` (lower is better; equal = tie).
    """

    anchor: str
    candidates: tuple[str, ...]
    anchor_kind: AnchorKind = "image"
    ranks: tuple[int, ...] = ()
    modified: tuple[bool, ...] | None = None
    weight: float = 1.0
    group: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if not self.ranks:
            object.__setattr__(self, "ranks", tuple(range(len(self.candidates))))

    def __len__(self) -> int:
        return len(self.candidates)

    def item(self, i: int) -> tuple[str, str]:
        """``(image, caption)`` of candidate ``i`` — what a CLIP scores."""
        c = self.candidates[i]
        return (self.anchor, c) if self.anchor_kind == "image" else (c, self.anchor)

    def items(self) -> list[tuple[str, str]]:
        return [self.item(i) for i in range(len(self.candidates))]

    @property
    def split_key(self) -> str:
        return self.group if self.group is not None else self.anchor

    def top(self) -> list[int]:
        """Indices of the best-ranked candidates (several when tied)."""
        best = min(self.ranks)
        return [i for i, r in enumerate(self.ranks) if r == best]


@dataclass(frozen=True)
class PreferencePair:
    """``(image, caption)`` preferred over ``(image, caption)``, with a weight."""

    chosen: tuple[str, str]
    rejected: tuple[str, str]
    weight: float = 1.0
    chosen_modified: bool | None = None
    rejected_modified: bool | None = None
    set_index: int = -1
    rank_gap: int = 1


@dataclass(frozen=True)
class VSRExample:
    """A Visual Spatial Reasoning row: is ``caption`` true of ``image``?"""

    image: str
    caption: str
    relation: str
    label: bool


# --------------------------------------------------------------------------- JSONL


def _where(path: str | os.PathLike, line: int) -> str:
    return f"{os.fspath(path)}:{line}"


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad lines raise with their number."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data file {os.fspath(path)!r} does not exist")
    with p.open("r", encoding="utf-8") as fh:
        for n, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{_where(path, n)}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{_where(path, n)}: expected a JSON object, got {type(obj).__name__}")
            yield n, obj


def _resolve_image(value: Any, root: Path, where: str, field_name: str, check: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {field_name!r} must be a non-empty image path, got {value!r}")
    p = Path(value)
    if not p.is_absolute():
        p = root / p
    path = os.path.abspath(p)  # one spelling per file: items are keyed by path
    if check and not os.path.isfile(path):
        raise ConfigError(f"{where}: image file {path!r} (field {field_name!r}) does not exist")
    return path


def _text(value: Any, where: str, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {field_name!r} must be a non-empty string, got {value!r}")
    return value


def _weight(obj: Mapping[str, Any], where: str) -> float:
    w = obj.get("weight", 1.0)
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
        raise ConfigError(f"{where}: 'weight' must be a positive finite number, got {w!r}")
    return float(w)


def _flags(value: Any, n: int, where: str, field_name: str) -> tuple[bool, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n or not all(isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: {field_name!r} must be a list of {n} true/false flags, got {value!r}")
    return tuple(value)


def _ranks(value: Any, n: int, where: str) -> tuple[int, ...]:
    if value is None:
        return tuple(range(n))
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(isinstance(r, int) and not isinstance(r, bool) for r in value)
    ):
        raise ConfigError(f"{where}: 'ranks' must be a list of {n} integers, got {value!r}")
    if any(b < a for a, b in zip(value, value[1:], strict=False)):
        raise ConfigError(
            f"{where}: 'ranks' must be non-decreasing (candidates are listed best first), got {value}"
        )
    if value[0] == value[-1]:
        raise ConfigError(f"{where}: all candidates are tied (ranks {value}); a ranked set needs a preference")
    return tuple(value)


def parse_record(
    obj: Mapping[str, Any],
    root: str | os.PathLike,
    where: str = "<record>",
    *,
    check_files: bool = True,
) -> RankedSet:
    """One JSON object (ranked set or pair) → :class:`RankedSet`; ``where`` prefixes errors."""
    root = Path(root)
    has_image, has_caption = "image" in obj, "caption" in obj
    if has_image == has_caption:
        raise ConfigError(
            f"{where}: a row needs exactly one anchor, 'image' (with candidate captions) or "
            f"'caption' (with candidate images); got keys {sorted(obj)}"
        )
    kind: AnchorKind = "image" if has_image else "text"
    anchor = (
        _resolve_image(obj["image"], root, where, "image", check_files)
        if kind == "image"
        else _text(obj["caption"], where, "caption")
    )
    list_key = "captions" if kind == "image" else "images"
    is_pair = "chosen" in obj or "rejected" in obj
    if is_pair and list_key in obj:
        raise ConfigError(f"{where}: give either {list_key!r} (a ranked set) or 'chosen'/'rejected' (a pair), not both")

    def cand(value: Any, name: str) -> str:
        if kind == "image":
            return _text(value, where, name)
        return _resolve_image(value, root, where, name, check_files)

    if is_pair:
        for k in ("chosen", "rejected"):
            if k not in obj:
                raise ConfigError(f"{where}: a preference pair needs both 'chosen' and 'rejected'")
        cands = (cand(obj["chosen"], "chosen"), cand(obj["rejected"], "rejected"))
        mods = [obj.get("chosen_modified"), obj.get("rejected_modified")]
        if any(m is not None and not isinstance(m, bool) for m in mods):
            raise ConfigError(f"{where}: 'chosen_modified'/'rejected_modified' must be true or false")
        modified = tuple(bool(m) for m in mods) if all(m is not None for m in mods) else None
        ranks: tuple[int, ...] = (0, 1)
    else:
        if list_key not in obj:
            other = "images" if kind == "image" else "captions"
            hint = f" (found {other!r}: a {kind} anchor takes {list_key!r})" if other in obj else ""
            raise ConfigError(f"{where}: missing {list_key!r} (candidates, best first) or 'chosen'/'rejected'{hint}")
        raw = obj[list_key]
        if not isinstance(raw, list) or len(raw) < 2:
            raise ConfigError(f"{where}: {list_key!r} must be a list of 2 or more candidates, got {raw!r}")
        cands = tuple(cand(v, f"{list_key}[{i}]") for i, v in enumerate(raw))
        ranks = _ranks(obj.get("ranks"), len(cands), where)
        modified = _flags(obj.get("modified"), len(cands), where, "modified")
    if len(set(cands)) != len(cands):
        dup = next(c for c in cands if cands.count(c) > 1)
        raise ConfigError(f"{where}: candidate {dup!r} appears twice")
    group = obj.get("group")
    ident = obj.get("id")
    return RankedSet(
        anchor=anchor,
        candidates=cands,
        anchor_kind=kind,
        ranks=ranks,
        modified=modified,
        weight=_weight(obj, where),
        group=None if group is None else str(group),
        id=None if ident is None else str(ident),
    )


def load_ranked_sets(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
) -> list[RankedSet]:
    """Read a JSONL file of ranked sets and/or pairs (see the module docstring).

    Every error names the file and line. Image files are checked for existence now, so
    a missing image fails before training starts rather than hours in.
    """
    root = Path(image_root) if image_root is not None else Path(os.path.abspath(path)).parent
    sets = [
        parse_record(obj, root, _where(path, n), check_files=check_files) for n, obj in read_jsonl(path)
    ]
    if not sets:
        raise ConfigError(f"data file {os.fspath(path)!r} has no records")
    return sets


def ranking_to_pairs(
    sets: Sequence[RankedSet],
    mode: str = "top",
    weighting: str = "none",
) -> list[PreferencePair]:
    """Expand rankings into preference pairs.

    ``mode``: ``"top"`` — every best-ranked candidate against every worse one (``K-1``
    pairs for a strict ranking of ``K``); ``"all"`` — every ordered pair with different
    ranks (``K(K-1)/2``); ``"adjacent"`` — each rank level against the next one
    (``K-1``). Ties never make a pair. ``weighting``: ``"none"`` (the set's weight) or
    ``"gap"`` (times the rank difference, so far-apart candidates count more; losses
    divide by the total weight, so this changes emphasis, not the learning rate).
    """
    if mode not in PAIR_MODES:
        raise ConfigError(f"unknown pairs mode {mode!r}; choose one of {PAIR_MODES}")
    if weighting not in PAIR_WEIGHTINGS:
        raise ConfigError(f"unknown pair weighting {weighting!r}; choose one of {PAIR_WEIGHTINGS}")
    out: list[PreferencePair] = []
    for si, s in enumerate(sets):
        levels = sorted(set(s.ranks))
        next_level = {a: b for a, b in zip(levels, levels[1:], strict=False)}
        best = levels[0]
        for i, ri in enumerate(s.ranks):
            if mode == "top" and ri != best:
                continue
            for j, rj in enumerate(s.ranks):
                if rj <= ri or (mode == "adjacent" and rj != next_level.get(ri)):
                    continue
                gap = rj - ri
                w = s.weight * (gap if weighting == "gap" else 1.0)
                out.append(
                    PreferencePair(
                        chosen=s.item(i),
                        rejected=s.item(j),
                        weight=float(w),
                        chosen_modified=None if s.modified is None else s.modified[i],
                        rejected_modified=None if s.modified is None else s.modified[j],
                        set_index=si,
                        rank_gap=gap,
                    )
                )
    return out


def load_pairs(
    path: str | os.PathLike,
    mode: str = "top",
    weighting: str = "none",
    image_root: str | os.PathLike | None = None,
) -> list[PreferencePair]:
    """:func:`load_ranked_sets` then :func:`ranking_to_pairs`."""
    return ranking_to_pairs(load_ranked_sets(path, image_root), mode=mode, weighting=weighting)


def _rel(p: str, base: Path) -> str:
    try:
        return os.path.relpath(p, base)
    except ValueError:  # other drive on Windows
        return p


def ranked_set_to_json(s: RankedSet, base: str | os.PathLike | None = None) -> dict[str, Any]:
    """The JSONL object of a ranked set; image paths relative to ``base`` when given."""
    b = Path(base) if base is not None else None

    def img(p: str) -> str:
        return _rel(p, b) if b is not None else p

    obj: dict[str, Any]
    if s.anchor_kind == "image":
        obj = {"image": img(s.anchor), "captions": list(s.candidates)}
    else:
        obj = {"caption": s.anchor, "images": [img(c) for c in s.candidates]}
    if s.ranks != tuple(range(len(s))):
        obj["ranks"] = list(s.ranks)
    if s.modified is not None:
        obj["modified"] = list(s.modified)
    if s.weight != 1.0:
        obj["weight"] = s.weight
    if s.group is not None:
        obj["group"] = s.group
    if s.id is not None:
        obj["id"] = s.id
    return obj


def write_ranked_sets(path: str | os.PathLike, sets: Iterable[RankedSet]) -> Path:
    """Write ranked sets as JSONL, image paths relative to the file's folder."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    base = Path(os.path.abspath(p)).parent
    with p.open("w", encoding="utf-8") as fh:
        for s in sets:
            fh.write(json.dumps(ranked_set_to_json(s, base), ensure_ascii=False) + "\n")
    return p


def split_sets(
    sets: Sequence[RankedSet], eval_fraction: float, seed: int = 0
) -> tuple[list[RankedSet], list[RankedSet]]:
    """Seeded train/eval split by ``group`` (else anchor), so augmented copies of one
    source image never straddle the split."""
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must lie in [0, 1), got {eval_fraction}")
    keys = sorted({s.split_key for s in sets})
    rng = random.Random(seed)
    rng.shuffle(keys)
    n_eval = int(round(eval_fraction * len(keys)))
    if eval_fraction > 0 and n_eval == 0 and len(keys) > 1:
        n_eval = 1
    held = set(keys[:n_eval])
    train = [s for s in sets if s.split_key not in held]
    ev = [s for s in sets if s.split_key in held]
    return train, ev


# --------------------------------------------------------------------------- images


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file → ``(H, W, 3)`` uint8 (grey is repeated, alpha dropped)."""
    import imageio.v3 as iio

    try:
        img = np.asarray(iio.imread(os.fspath(path)))
    except Exception as exc:  # noqa: BLE001 - any decoder error is the same problem for the user
        raise ConfigError(f"cannot read image {os.fspath(path)!r}: {str(exc).splitlines()[0][:200]}") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise ConfigError(f"image {os.fspath(path)!r} has unsupported shape {img.shape}")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:  # 16-bit PNGs
            img = (img.astype(np.float64) * 255.0 / np.iinfo(img.dtype).max + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img)


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


# --------------------------------------------------------------------------- VSR


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise ConfigError(f"{where}: 'label' must be 0/1 or true/false, got {value!r}")


def load_vsr(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
) -> list[VSRExample]:
    """Read VSR jsonl (``image, caption, relation, label``; extra VSR fields are ignored).

    VSR ships image file names (COCO) separately from the jsonl: pass the image folder as
    ``image_root`` (default: the jsonl's folder).
    """
    root = Path(image_root) if image_root is not None else Path(os.path.abspath(path)).parent
    out = []
    for n, obj in read_jsonl(path):
        where = _where(path, n)
        missing = [k for k in ("image", "caption", "relation", "label") if k not in obj]
        if missing:
            raise ConfigError(f"{where}: VSR row is missing {missing}; rows need image, caption, relation, label")
        out.append(
            VSRExample(
                image=_resolve_image(obj["image"], root, where, "image", check_files),
                caption=_text(obj["caption"], where, "caption"),
                relation=_text(obj["relation"], where, "relation"),
                label=_label(obj["label"], where),
            )
        )
    if not out:
        raise ConfigError(f"VSR file {os.fspath(path)!r} has no rows")
    return out


def load_image_captions(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> list[tuple[str, str]]:
    """Read ``{"image": ..., "caption": ...}`` rows (the builder's and the probe's input)."""
    root = Path(image_root) if image_root is not None else Path(os.path.abspath(path)).parent
    out = []
    for n, obj in read_jsonl(path):
        where = _where(path, n)
        for k in ("image", "caption"):
            if k not in obj:
                raise ConfigError(f"{where}: row needs 'image' and 'caption', missing {k!r}")
        out.append(
            (_resolve_image(obj["image"], root, where, "image", True), _text(obj["caption"], where, "caption"))
        )
    if not out:
        raise ConfigError(f"file {os.fspath(path)!r} has no rows")
    return out


# --------------------------------------------------------------------------- builder


@dataclass
class BuildStats:
    """What :func:`build_ranked_sets` made, for a one-line summary."""

    sources: int = 0
    sets: int = 0
    retrieved: int = 0
    flip_sets: int = 0
    color_sets: int = 0
    relation_negatives: int = 0
    skipped_color: int = 0
    notes: list[str] = field(default_factory=list)


def _norm_caption(c: str) -> str:
    return " ".join(c.lower().split()).rstrip(".")


def build_ranked_sets(
    examples: Sequence[tuple[str, str]],
    out_dir: str | os.PathLike,
    clip: Any | None = None,
    *,
    threshold: float = 0.25,
    max_retrieved: int = 3,
    max_text_similarity: float = 0.95,
    augment: Sequence[str] = AUGMENTATIONS,
    relation_table: Mapping[str, str] | None = None,
    stats: BuildStats | None = None,
) -> list[RankedSet]:
    """Ranked sets from ``(image_path, caption)`` examples; augmented images go to ``out_dir``.

    For each example the true caption ranks first (rank 0) and hard negatives tie
    below it (rank 1): there is no trustworthy order among wrong captions.

    * retrieval (needs ``clip``): captions of *other* images whose cosine with this image
      is ``>= threshold`` (the reward CLIP confuses them), most similar first, at most
      ``max_retrieved``; captions of the same image, and near-paraphrases (text–text
      cosine ``>= max_text_similarity``), are never negatives;
    * ``"relation"``: the caption with each spatial relation swapped (whole words);
    * ``"flip"``: the horizontally flipped image is saved, and a set is added for it
      whose best caption is the left/right-swapped caption and whose negative is the
      *unmodified* caption;
    * ``"color"``: likewise with the R↔B channel swap and colour words.

    Flip and colour sets prefer a *modified* caption over the unmodified one, so the
    data does not teach (or reward, in evaluation) "prefer the unmodified caption".
    """
    bad = [a for a in augment if a not in AUGMENTATIONS]
    if bad:
        raise ConfigError(f"unknown augmentation(s) {bad}; choose from {AUGMENTATIONS}")
    if max_retrieved < 0:
        raise ConfigError(f"max_retrieved must be >= 0, got {max_retrieved}")
    st = stats if stats is not None else BuildStats()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    st.sources = len(examples)
    captions_of: dict[str, set[str]] = {}
    for img, cap in examples:
        captions_of.setdefault(img, set()).add(_norm_caption(cap))

    retrieved: list[list[str]] = [[] for _ in examples]
    if clip is not None and max_retrieved > 0 and len(examples) > 1:
        import torch

        images = sorted(captions_of)
        texts = list(dict.fromkeys(c for _, c in examples))
        img_index = {p: i for i, p in enumerate(images)}
        with torch.inference_mode():
            img_emb = torch.cat([clip.embed_images(load_image(p)) for p in images]).float()
            txt_emb = clip.embed_texts(texts).float()
        sim = (img_emb @ txt_emb.T).cpu().numpy()
        tt = (txt_emb @ txt_emb.T).cpu().numpy()
        t_index = {t: i for i, t in enumerate(texts)}
        for k, (img, cap) in enumerate(examples):
            row = sim[img_index[img]]
            order = np.argsort(-row, kind="stable")
            own = captions_of[img]
            for j in order:
                if row[j] < threshold or len(retrieved[k]) >= max_retrieved:
                    break
                c = texts[j]
                if _norm_caption(c) in own or tt[t_index[cap], j] >= max_text_similarity:
                    continue
                retrieved[k].append(c)
    sets: list[RankedSet] = []
    for k, (img, cap) in enumerate(examples):
        group = str(k)
        stem = f"{k:06d}_{Path(img).stem}"
        negs: list[tuple[str, bool]] = []

        def add(c: str | None, modified: bool, _negs: list[tuple[str, bool]] = negs, _cap: str = cap) -> bool:
            if c is None or _norm_caption(c) == _norm_caption(_cap) or any(
                _norm_caption(c) == _norm_caption(n) for n, _ in _negs
            ):
                return False
            _negs.append((c, modified))
            return True

        if "relation" in augment and add(swap_relations(cap, relation_table), True):
            st.relation_negatives += 1
        if "color" in augment:
            add(color_caption(cap), True)
        for c in retrieved[k]:
            if add(c, False):
                st.retrieved += 1
        if negs:
            sets.append(
                RankedSet(
                    anchor=img,
                    candidates=(cap, *(c for c, _ in negs)),
                    ranks=(0, *([1] * len(negs))),
                    modified=(False, *(m for _, m in negs)),
                    group=group,
                    id=f"{k}/orig",
                )
            )
        # Image edits: (name, the edited image's caption, the edit). Each edit that changes
        # the caption saves out/<stem>_<name>.png and adds the set "<k>/<name>".
        edits: list[tuple[str, str | None, Callable[[np.ndarray], np.ndarray]]] = []
        if "flip" in augment:
            edits.append(("flip", flip_caption(cap), flip_image))
        if "color" in augment:
            edits.append(("color", color_caption(cap), color_swap_image))
        img_arr: np.ndarray | None = None
        for name, edited, edit in edits:
            if edited is None:  # a colour word whose image is unknown
                st.skipped_color += 1
                continue
            if _norm_caption(edited) == _norm_caption(cap):  # nothing to tell apart
                continue
            img_arr = load_image(img) if img_arr is None else img_arr
            path = out / f"{stem}_{name}.png"
            _save_png(path, edit(img_arr))
            sets.append(
                RankedSet(
                    anchor=os.path.abspath(path),
                    candidates=(edited, cap),
                    modified=(True, False),
                    group=group,
                    id=f"{k}/{name}",
                )
            )
            if name == "flip":
                st.flip_sets += 1
            else:
                st.color_sets += 1
    st.sets = len(sets)
    if not sets:
        st.notes.append("no ranked sets: captions had no swappable words and retrieval found nothing")
    return sets


def _save_png(path: Path, img: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(os.fspath(path), img)


class ImageCache:
    """Decoded images by path, least recently used evicted beyond ``max_items``.

    Preference data names each image many times (one image, many candidate captions);
    decoding it once per run instead of once per pair is most of the data-loading cost.
    """

    def __init__(self, max_items: int = 1024) -> None:
        from collections import OrderedDict

        self.max_items = int(max_items)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, path: str) -> np.ndarray:
        hit = self._items.get(path)
        if hit is not None:
            self._items.move_to_end(path)
            return hit
        img = load_image(path)
        if self.max_items > 0:
            self._items[path] = img
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return img

    def __len__(self) -> int:
        return len(self._items)
