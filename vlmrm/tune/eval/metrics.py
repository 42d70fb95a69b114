"""Evaluating a (tuned) CLIP reward model: preferences, VSR and a zero-shot probe.

**Preference accuracy** counts, over held-out ranked sets, the pairs whose preferred
candidate scores higher (ties count ½). Hard negatives made by editing captions create
a shortcut: in a naive set, the preferred caption is always the *unmodified* one, so a
model that merely recognises edited text scores 100%. Here every pair is classed by its
``modified`` flags — unmodified preferred (U>M), modified preferred (M>U), or neither —
and the U>M and M>U classes are re-weighted to equal total weight. The "always prefer
the unmodified caption" scorer then scores exactly 50% on those pairs (and 50% on the
rest, where it can only tie), whatever the mix. The shortcut's own score under the same
weighting is reported next to every accuracy as ``baseline_prefer_unmodified``. Data
whose edited pairs all point the same way cannot be balanced; those pairs are then left
out and the result says so. :func:`vlmrm.tune.data.build_ranked_sets` makes balanced
data (a flipped or recoloured image prefers the edited caption).

**VSR accuracy** — is the caption true of the image? Two deciders:

* ``"swap"`` (default): true iff the caption outscores the same caption with its
  relation replaced by an excluding one ("left of" → "right of", "touching" →
  "detached from"; :mod:`vlmrm.tune.vsr.relations` covers VSR's relations). Rows
  whose relation has none ("with", "among", "between", "at", "around") are counted as
  skipped, by relation.
* ``"threshold"``: true iff ``cos(image, caption) > t``. ``t`` is given, or fitted on
  the dev split (``vsr_dev=``, :func:`fit_threshold`), or — the label-free fallback —
  the median score of the evaluated rows, which predicts "true" for half the rows.

Both report accuracy per relation and per meta-category, VSR's human accuracy (95.4%)
and the "always true" baseline (the "prefer the unmodified caption" shortcut).

**Probe**: the zero-shot reward ``R`` of the reward core (α = 0, goal = the caption,
which is ``cos``) of a fixed set of image–caption pairs: mean reward of the matching
caption, of the other captions, their gap and top-1 retrieval — before and after tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from vlmrm.errors import ConfigError
from vlmrm.reward import goal_baseline_reward
from vlmrm.tune.data.images import ImageCache
from vlmrm.tune.data.records import Item, RankedSet, VSRExample, ranking_to_pairs


@torch.inference_mode()
def embed_items(
    clip: Any,
    items: Sequence[Item],
    images: ImageCache | Callable[[str], np.ndarray] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Unit embeddings of the distinct images and captions in ``items``.

    Images are grouped by size so that each group is one batched call.
    """
    load = images if images is not None else ImageCache()
    paths = list(dict.fromkeys(p for p, _ in items))
    texts = list(dict.fromkeys(t for _, t in items))
    by_shape: dict[tuple[int, ...], list[str]] = {}
    arrays = {p: load(p) for p in paths}
    for p in paths:
        by_shape.setdefault(arrays[p].shape, []).append(p)
    img_emb: dict[str, torch.Tensor] = {}
    for group in by_shape.values():
        emb = clip.embed_images(np.stack([arrays[p] for p in group])).float().cpu()
        img_emb.update(zip(group, emb, strict=True))
    txt = clip.embed_texts(texts).float().cpu() if texts else torch.empty(0)
    txt_emb = dict(zip(texts, txt, strict=True))
    return img_emb, txt_emb


def cosine_scores(
    clip: Any, items: Sequence[Item], images: ImageCache | Callable[[str], np.ndarray] | None = None
) -> np.ndarray:
    """``cos(image, caption)`` of each ``(image, caption)`` item (float64)."""
    if not items:
        return np.zeros(0)
    img, txt = embed_items(clip, items, images)
    a = torch.stack([img[p] for p, _ in items]).double()
    b = torch.stack([txt[t] for _, t in items]).double()
    return (a * b).sum(-1).numpy()


def set_scores(
    clip: Any, sets: Sequence[RankedSet], images: ImageCache | Callable[[str], np.ndarray] | None = None
) -> list[np.ndarray]:
    """The model's score of every candidate of every set (cosine; τ does not change ranks)."""
    items = [it for s in sets for it in s.items()]
    flat = cosine_scores(clip, items, images)
    out, k = [], 0
    for s in sets:
        out.append(flat[k : k + len(s)])
        k += len(s)
    return out


def prefer_unmodified_scores(sets: Sequence[RankedSet]) -> list[np.ndarray]:
    """The shortcut scorer: 1 for an unmodified candidate, 0 for an edited one."""
    out = []
    for s in sets:
        if s.modified is None:
            out.append(np.zeros(len(s)))
        else:
            out.append(np.array([0.0 if m else 1.0 for m in s.modified]))
    return out


def pairwise_accuracy(
    sets: Sequence[RankedSet],
    scores: Sequence[np.ndarray],
    mode: str = "all",
    balance: bool = True,
) -> dict[str, Any]:
    """Preference accuracy over the pairs of ``sets`` (see the module docstring).

    Returns ``accuracy`` (balanced unless ``balance=False``), ``raw_accuracy`` (every pair
    once), ``baseline_prefer_unmodified`` (the shortcut's accuracy, same weighting),
    pair counts per class (``n_unmodified_preferred``, ``n_modified_preferred``,
    ``n_neutral``) and ``note`` when the data could not be balanced.
    """
    if len(sets) != len(scores):
        raise ConfigError(f"got {len(sets)} sets but {len(scores)} score arrays")
    pairs = ranking_to_pairs(sets, mode=mode)
    if not pairs:
        raise ConfigError("no preference pairs to evaluate")
    shortcut = prefer_unmodified_scores(sets)
    # index of each candidate inside its set
    pos: list[dict[str, int]] = [{c: i for i, c in enumerate(s.candidates)} for s in sets]
    correct, base, cls = [], [], []
    for p in pairs:
        s = sets[p.set_index]
        idx = pos[p.set_index]
        key = 1 if s.anchor_kind == "image" else 0
        i, j = idx[p.chosen[key]], idx[p.rejected[key]]
        sc = scores[p.set_index]
        correct.append(1.0 if sc[i] > sc[j] else 0.5 if sc[i] == sc[j] else 0.0)
        bs = shortcut[p.set_index]
        base.append(1.0 if bs[i] > bs[j] else 0.5 if bs[i] == bs[j] else 0.0)
        if p.chosen_modified is None or p.chosen_modified == p.rejected_modified:
            cls.append("neutral")
        elif p.chosen_modified:
            cls.append("modified_preferred")
        else:
            cls.append("unmodified_preferred")
    c, b, k = np.array(correct), np.array(base), np.array(cls)
    n_u, n_m = int((k == "unmodified_preferred").sum()), int((k == "modified_preferred").sum())
    n_n = int((k == "neutral").sum())
    w = np.ones(len(c))
    note = None
    if balance and (n_u or n_m):
        if n_u and n_m:
            half = (n_u + n_m) / 2.0
            w[k == "unmodified_preferred"] = half / n_u
            w[k == "modified_preferred"] = half / n_m
        else:
            w[k != "neutral"] = 0.0
            side = "unmodified" if n_u else "modified"
            note = (
                f"every edited pair prefers the {side} candidate, so those {n_u + n_m} pairs reward a "
                "shortcut and were left out; build data with flip/colour sets to balance them"
            )
    total = w.sum()
    acc = float((w * c).sum() / total) if total > 0 else float("nan")
    base_acc = float((w * b).sum() / total) if total > 0 else float("nan")
    out: dict[str, Any] = {
        "accuracy": acc,
        "raw_accuracy": float(c.mean()),
        "baseline_prefer_unmodified": base_acc,
        "n_pairs": len(c),
        "n_unmodified_preferred": n_u,
        "n_modified_preferred": n_m,
        "n_neutral": n_n,
    }
    if note:
        out["note"] = note
    return out


def listwise_top1(sets: Sequence[RankedSet], scores: Sequence[np.ndarray]) -> float:
    """Fraction of sets whose highest-scoring candidate is a best-ranked one."""
    hits = [int(np.argmax(sc)) in s.top() for s, sc in zip(sets, scores, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def fit_threshold(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The threshold ``t`` (predict true iff score > t) with the best accuracy on these rows."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.size == 0:
        raise ConfigError("fit_threshold needs at least one scored row")
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1.0]])
    accs = [((s > t) == y).mean() for t in cands]
    return float(cands[int(np.argmax(accs))])


def vsr_breakdown(relations: Sequence[str], correct: Sequence[bool]) -> dict[str, dict[str, dict[str, float]]]:
    """Per-relation and per-meta-category ``{"n", "correct", "accuracy"}`` of scored rows.

    Every row counts once in its relation and once in its category, so each breakdown's
    counts sum to the overall ones.
    """
    from vlmrm.tune.vsr.relations import meta_category, normalize_relation

    out: dict[str, dict[str, dict[str, float]]] = {"per_relation": {}, "per_category": {}}
    for rel, ok in zip(relations, correct, strict=True):
        for table, key in (("per_relation", normalize_relation(rel)), ("per_category", meta_category(rel))):
            row = out[table].setdefault(key, {"n": 0, "correct": 0})
            row["n"] += 1
            row["correct"] += int(bool(ok))
    for table in out.values():
        for row in table.values():
            row["accuracy"] = row["correct"] / row["n"]
    return out


def vsr_accuracy(
    clip: Any,
    examples: Sequence[VSRExample],
    method: str = "swap",
    threshold: float | None = None,
    images: ImageCache | Callable[[str], np.ndarray] | None = None,
    dev: Sequence[VSRExample] = (),
) -> dict[str, Any]:
    """VSR accuracy by ``"swap"`` or ``"threshold"`` (see the module docstring).

    ``threshold``: a given ``t``; else, with ``dev`` rows, the ``t`` that is best on them
    (:func:`fit_threshold`); else the median of the evaluated rows. Besides ``accuracy``
    and the counts, the result has ``per_relation`` and ``per_category`` breakdowns,
    VSR's ``human_accuracy`` and the "always true" baseline (the swap decider's "prefer
    the unmodified caption" shortcut) as ``baseline_prefer_unmodified``.
    """
    from vlmrm.tune.vsr.relations import HUMAN_ACCURACY, swap_caption

    if method not in ("swap", "threshold"):
        raise ConfigError(f"unknown VSR method {method!r}; choose 'swap' or 'threshold'")
    if not examples:
        raise ConfigError("no VSR examples to evaluate")
    labels = np.array([e.label for e in examples], dtype=bool)
    common = {"human_accuracy": HUMAN_ACCURACY / 100.0}
    if method == "threshold":
        s = cosine_scores(clip, [(e.image, e.caption) for e in examples], images)
        if threshold is not None:
            t, source = float(threshold), "given"
        elif dev:
            ds = cosine_scores(clip, [(e.image, e.caption) for e in dev], images)
            t, source = fit_threshold(ds, [e.label for e in dev]), f"fitted on {len(dev)} dev rows"
        else:
            t, source = float(np.median(s)), "median (label-free)"
        ok = (s > t) == labels
        return {
            "accuracy": float(ok.mean()), "n": len(examples), "threshold": t,
            "threshold_source": source, "baseline_prefer_unmodified": float(labels.mean()),
            **vsr_breakdown([e.relation for e in examples], ok.tolist()), **common,
        }  # fmt: skip
    alts = [swap_caption(e.caption, e.relation) for e in examples]
    keep = [i for i, a in enumerate(alts) if a is not None]
    no_opposite = sorted({e.relation for e, a in zip(examples, alts, strict=True) if a is None})
    skipped = {"n_skipped": len(examples) - len(keep), "skipped_relations": no_opposite}
    if not keep:
        return {"accuracy": float("nan"), "n": 0, **skipped, **common}
    items = [(examples[i].image, examples[i].caption) for i in keep]
    items += [(examples[i].image, alts[i]) for i in keep]  # type: ignore[misc]
    s = cosine_scores(clip, items, images)
    n = len(keep)
    ok = (s[:n] > s[n:]) == labels[keep]
    return {
        "accuracy": float(ok.mean()), "n": n, **skipped,
        "baseline_prefer_unmodified": float(labels[keep].mean()),
        **vsr_breakdown([examples[i].relation for i in keep], ok.tolist()), **common,
    }  # fmt: skip


def probe_rewards(
    clip: Any,
    pairs: Sequence[Item],
    images: ImageCache | Callable[[str], np.ndarray] | None = None,
) -> dict[str, float]:
    """Zero-shot reward of the reward core on fixed ``(image, caption)`` pairs.

    ``R`` is :func:`vlmrm.reward.goal_baseline_reward` with α = 0 and the caption as the
    goal. Reports ``matched`` (mean R of each image's own caption), ``mismatched`` (mean
    R of the other, different captions), ``gap`` and ``top1`` (own caption scores best).
    """
    if len(pairs) < 2:
        raise ConfigError("the probe needs at least 2 image–caption pairs")
    img, txt = embed_items(clip, pairs, images)
    caps = list(txt)
    s = torch.stack([img[p] for p, _ in pairs])
    # R[i, j]: reward of image i for caption j.
    R = torch.stack([goal_baseline_reward(s, txt[c], None, 0.0) for c in caps], dim=1).numpy()
    col = {c: j for j, c in enumerate(caps)}
    own = np.array([col[c] for _, c in pairs])
    rows = np.arange(len(pairs))
    matched = R[rows, own]
    mask = np.ones_like(R, dtype=bool)
    mask[rows, own] = False
    mismatched = R[mask].mean() if mask.any() else float("nan")
    top1 = (R.argmax(1) == own).mean()
    return {
        "matched": float(matched.mean()),
        "mismatched": float(mismatched),
        "gap": float(matched.mean() - mismatched),
        "top1": float(top1),
    }


def evaluate_model(
    clip: Any,
    sets: Sequence[RankedSet] = (),
    *,
    vsr: Sequence[VSRExample] = (),
    probe: Sequence[Item] = (),
    vsr_threshold: float | None = None,
    images: ImageCache | Callable[[str], np.ndarray] | None = None,
    vsr_dev: Sequence[VSRExample] = (),
) -> dict[str, Any]:
    """Every available metric as one flat dict (``pref/…``, ``vsr/…``, ``probe/…``)."""
    cache = images if images is not None else ImageCache()
    clip.clear_text_cache()
    out: dict[str, Any] = {}
    if sets:
        scores = set_scores(clip, sets, cache)
        acc = pairwise_accuracy(sets, scores)
        out.update({f"pref/{k}": v for k, v in acc.items()})
        out["pref/top1"] = listwise_top1(sets, scores)
    if vsr:
        sw = vsr_accuracy(clip, vsr, "swap", images=cache)
        th = vsr_accuracy(clip, vsr, "threshold", vsr_threshold, images=cache, dev=vsr_dev)
        out.update({"vsr/swap_accuracy": sw["accuracy"], "vsr/swap_n": sw["n"]})
        out["vsr/swap_skipped"] = sw["n_skipped"]
        out.update({"vsr/threshold_accuracy": th["accuracy"], "vsr/threshold": th["threshold"]})
        out["vsr/baseline_prefer_unmodified"] = th["baseline_prefer_unmodified"]
        out["vsr/human_accuracy"] = th["human_accuracy"]
    if probe:
        out.update({f"probe/{k}": v for k, v in probe_rewards(clip, probe, cache).items()})
    return out
