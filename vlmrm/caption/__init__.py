"""Image captioning with a CLIP-prefix captioner (ClipCap / CapDec) and CLIP-based metrics.

* :class:`ClipCaptioner` — frozen CLIP → trained :class:`PrefixMapper` → frozen
  ``transformers`` causal LM; beam search / nucleus sampling; the caption likelihood
  with padding masked.
* ``python -m vlmrm.caption.train`` — trains the mapper on image–caption data (ClipCap, on
  image embeddings) or on captions alone (CapDec, noisy text embeddings).
* :func:`coco_metrics`, :func:`clip_scores` — BLEU/METEOR/ROUGE-L/CIDEr and CLIPScore /
  RefCLIPScore.
* :func:`rerank_captions` — caption-and-rerank: N captions from any captioner, ordered by a CLIP reward.
* Test-time adaptation of the captioner with CLIP reward is ``python -m vlmrm.tta task=caption``
  (:class:`vlmrm.tta.captioning.adapt.CaptionTTA`).

The names below are imported on first use, so commands answer ``--help`` without torch.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_EXPORTS = {
    "vlmrm.caption.captioner": (
        "Caption",
        "ClipCaptioner",
        "load_mapper",
        "mapper_for",
        "save_mapper",
    ),
    "vlmrm.caption.mapper": ("MapperConfig", "PrefixMapper"),
    "vlmrm.caption.lm": ("CaptionVocab", "load_lm"),
    "vlmrm.caption.data": ("CaptionData", "load_captions"),
    "vlmrm.caption.metrics": ("clip_scores", "coco_metrics"),
    "vlmrm.caption.reranking": ("captioner_candidates", "hf_candidates", "rerank_captions"),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
