"""Ranked sets with hard negatives from image–caption pairs (``python -m vlmrm.tune.build``).

For each example the true caption ranks first (rank 0) and hard negatives tie below it
(rank 1): there is no trustworthy order among wrong captions. The negatives come from
three places: captions of other images that the reward CLIP confuses with this one
(retrieval), caption edits (relation and colour swaps), and image edits (a flipped or
colour-swapped copy whose best caption is the *edited* one, so the data never teaches
"prefer the unmodified caption").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.images import load_image, save_png
from vlmrm.tune.data.augment import (
    AUGMENTATIONS,
    color_caption,
    color_swap_image,
    flip_caption,
    flip_image,
    swap_relations,
)
from vlmrm.tune.data.records import RankedSet


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


def retrieve_negatives(
    examples: Sequence[tuple[str, str]],
    clip: Any,
    *,
    threshold: float,
    max_retrieved: int,
    max_text_similarity: float,
) -> list[list[str]]:
    """Per example, captions of *other* images the CLIP finds close to its image.

    A caption qualifies when its cosine with the image is ``>= threshold``; most similar
    first, at most ``max_retrieved``. Captions of the same image and near-paraphrases of
    the true caption (text–text cosine ``>= max_text_similarity``) are never negatives.
    """
    import torch

    captions_of: dict[str, set[str]] = {}
    for img, cap in examples:
        captions_of.setdefault(img, set()).add(_norm_caption(cap))
    images = sorted(captions_of)
    texts = list(dict.fromkeys(c for _, c in examples))
    img_index = {p: i for i, p in enumerate(images)}
    with torch.inference_mode():
        img_emb = torch.cat([clip.embed_images(load_image(p)) for p in images]).float()
        txt_emb = clip.embed_texts(texts).float()
    sim = (img_emb @ txt_emb.T).cpu().numpy()
    tt = (txt_emb @ txt_emb.T).cpu().numpy()
    t_index = {t: i for i, t in enumerate(texts)}
    retrieved: list[list[str]] = [[] for _ in examples]
    for k, (img, cap) in enumerate(examples):
        row = sim[img_index[img]]
        own = captions_of[img]
        for j in np.argsort(-row, kind="stable"):
            if row[j] < threshold or len(retrieved[k]) >= max_retrieved:
                break
            c = texts[j]
            if _norm_caption(c) in own or tt[t_index[cap], j] >= max_text_similarity:
                continue
            retrieved[k].append(c)
    return retrieved


def _caption_negatives(
    cap: str,
    retrieved: Sequence[str],
    augment: Sequence[str],
    relation_table: Mapping[str, str] | None,
    st: BuildStats,
) -> list[tuple[str, bool]]:
    """``(negative caption, modified)`` for one example: edits first, then retrieved ones."""
    negs: list[tuple[str, bool]] = []

    def add(c: str | None, modified: bool) -> bool:
        if c is None or _norm_caption(c) == _norm_caption(cap) or any(
            _norm_caption(c) == _norm_caption(n) for n, _ in negs
        ):
            return False
        negs.append((c, modified))
        return True

    if "relation" in augment and add(swap_relations(cap, relation_table), True):
        st.relation_negatives += 1
    if "color" in augment:
        add(color_caption(cap), True)
    for c in retrieved:
        if add(c, False):
            st.retrieved += 1
    return negs


def _edited_image_sets(
    k: int, img: str, cap: str, out: Path, augment: Sequence[str], st: BuildStats
) -> list[RankedSet]:
    """Sets for the flipped / colour-swapped copies of one image (saved as PNG in ``out``).

    Each edit that changes the caption saves ``out/<stem>_<name>.png`` and adds the set
    ``"<k>/<name>"`` preferring the edited caption to the unmodified one.
    """
    edits: list[tuple[str, str | None, Callable[[np.ndarray], np.ndarray]]] = []
    if "flip" in augment:
        edits.append(("flip", flip_caption(cap), flip_image))
    if "color" in augment:
        edits.append(("color", color_caption(cap), color_swap_image))
    stem = f"{k:06d}_{Path(img).stem}"
    img_arr: np.ndarray | None = None
    sets = []
    for name, edited, edit in edits:
        if edited is None:  # a colour word whose image is unknown
            st.skipped_color += 1
            continue
        if _norm_caption(edited) == _norm_caption(cap):  # nothing to tell apart
            continue
        img_arr = load_image(img) if img_arr is None else img_arr
        path = out / f"{stem}_{name}.png"
        save_png(path, edit(img_arr))
        sets.append(
            RankedSet(
                anchor=os.path.abspath(path),
                candidates=(edited, cap),
                modified=(True, False),
                group=str(k),
                id=f"{k}/{name}",
            )
        )
        if name == "flip":
            st.flip_sets += 1
        else:
            st.color_sets += 1
    return sets


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

    * retrieval (needs ``clip``): see :func:`retrieve_negatives`;
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
    retrieved: list[list[str]] = [[] for _ in examples]
    if clip is not None and max_retrieved > 0 and len(examples) > 1:
        retrieved = retrieve_negatives(
            examples, clip, threshold=threshold, max_retrieved=max_retrieved,
            max_text_similarity=max_text_similarity,
        )
    sets: list[RankedSet] = []
    for k, (img, cap) in enumerate(examples):
        negs = _caption_negatives(cap, retrieved[k], augment, relation_table, st)
        if negs:
            sets.append(
                RankedSet(
                    anchor=img,
                    candidates=(cap, *(c for c, _ in negs)),
                    ranks=(0, *([1] * len(negs))),
                    modified=(False, *(m for _, m in negs)),
                    group=str(k),
                    id=f"{k}/orig",
                )
            )
        sets.extend(_edited_image_sets(k, img, cap, out, augment, st))
    st.sets = len(sets)
    if not sets:
        st.notes.append("no ranked sets: captions had no swappable words and retrieval found nothing")
    return sets
