"""The training set of a captioner: CLIP features computed once, captions tokenized once.

``<out>/features.pt`` holds, for ClipCap, the unit image embedding of every image and, for
CapDec, the unit text embedding of every caption, plus the caption token ids and which
image each caption belongs to. It is keyed by what produced it (CLIP, data, split, mode,
LM vocabulary, limit): a run with other settings recomputes it, a resumed run reuses it, and
a damaged file is computed again after one warning line (:mod:`vlmrm.runtime.cache`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlmrm.caption.data import CaptionData
from vlmrm.caption.lm import CaptionVocab
from vlmrm.models import ClipModel
from vlmrm.runtime.cache import cached

FEATURES = "features.pt"


@dataclass
class TrainingSet:
    """Per caption: its token ids and the row of ``features`` it is trained from."""

    features: torch.Tensor  # (F, D) unit embeddings: images (clipcap) or captions (capdec)
    tokens: list[list[int]]
    rows: torch.Tensor  # (N,) long: caption i trains from features[rows[i]]

    def __len__(self) -> int:
        return len(self.tokens)


def _image_features(
    clip: ClipModel, data: CaptionData, batch: int, progress: Callable
) -> torch.Tensor:
    from vlmrm.runtime.images import load_image

    chunks, pending = [], []
    for path in progress(data.image_paths, "embedding images"):
        pending.append(clip.preprocess(load_image(path)))  # (1, 3, S, S): images differ in size
        if len(pending) == batch:
            chunks.append(clip.encode_preprocessed(torch.cat(pending)).cpu())
            pending = []
    if pending:
        chunks.append(clip.encode_preprocessed(torch.cat(pending)).cpu())
    return torch.cat(chunks)


def _text_features(
    clip: ClipModel, captions: list[str], batch: int, progress: Callable
) -> torch.Tensor:
    chunks = []
    for start in progress(range(0, len(captions), batch), "embedding captions"):
        chunks.append(clip.embed_texts(captions[start : start + batch]).cpu())
        clip.clear_text_cache()  # each caption is embedded once: keep no cache
    return torch.cat(chunks)


def training_set(
    out: Path,
    key: dict[str, Any],
    clip: ClipModel,
    vocab: CaptionVocab,
    data: CaptionData,
    mode: str,
    max_tokens: int,
    progress: Callable = lambda it, desc: it,
) -> TrainingSet:
    """The cached training set of ``out``, or a new one (computed and cached atomically,
    :func:`vlmrm.runtime.cache.cached`; a damaged cache is computed again with a warning)."""

    def build() -> dict[str, Any]:
        pairs = data.pairs()
        captions = [c for _, c in pairs]
        tokens = [vocab.encode(c)[:max_tokens] for c in captions]
        batch = int(clip.batch_size)
        if mode == "clipcap":
            features = _image_features(clip, data, batch, progress)
            rows = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        else:
            features = _text_features(clip, captions, batch, progress)
            rows = torch.arange(len(captions), dtype=torch.long)
        return {"features": features, "tokens": tokens, "rows": rows}

    saved = cached(out / FEATURES, key, build, required=("features", "tokens", "rows"))
    return TrainingSet(saved["features"], saved["tokens"], saved["rows"])


def capdec_noise(
    features: torch.Tensor, variance: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """CapDec's input: ``normalize(e + ε)``, ``ε ~ N(0, variance·I)``, for unit text embeddings ``e``."""
    noise = torch.randn(features.shape, generator=generator).to(features.device)  # a CPU generator
    noisy = features + noise * float(variance) ** 0.5
    return noisy / noisy.norm(dim=-1, keepdim=True)
