"""Preference records for tuning CLIP: ranked image–caption sets and pairs in JSONL.

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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write_lines
from vlmrm.tune.settings import PAIR_MODES, PAIR_WEIGHTINGS

AnchorKind = Literal["image", "text"]
Item = tuple[str, str]  # (image path, caption)

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
    with p.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ConfigError(f"{_where(path, n)}: not UTF-8 text; data= must be a JSONL file") from None
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
    base = Path(os.path.abspath(p)).parent
    atomic_write_lines(p, (json.dumps(ranked_set_to_json(s, base), ensure_ascii=False) for s in sets))
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

