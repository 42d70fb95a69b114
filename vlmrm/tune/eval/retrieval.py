"""Image–text retrieval metrics of a CLIP on a held-out set: Recall@K and matching accuracy.

* **Recall@K** (image→text): an image is a hit when one of its own captions ranks in the
  top K of every caption of the set; (text→image): a caption is a hit when its image
  ranks in the top K of every image. Ties count in the model's favour of neither: a
  candidate ties the target only when it scores exactly the same, and ranks are the
  number of candidates scoring strictly higher.
* **Matching accuracy** is the fine-tuning objective's own view: the images are cut in
  batches of ``batch`` (in order), each with its first caption, and an image (caption)
  is right when its own caption (image) scores highest in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from vlmrm.tune.data.captions import CaptionedImage

KS = (1, 5, 10)


def recall_at_k(
    img: torch.Tensor, txt: torch.Tensor, owner: Sequence[int], ks: Sequence[int] = KS
) -> dict[str, float]:
    """``i2t_R@K`` and ``t2i_R@K`` of unit embeddings; ``owner[j]`` is caption ``j``'s image."""
    sim = img.double() @ txt.double().T  # (N images, M captions)
    own = torch.as_tensor(list(owner), dtype=torch.long)
    n, m = sim.shape
    positive = torch.zeros((n, m), dtype=torch.bool)
    positive[own, torch.arange(m)] = True
    best_own = sim.masked_fill(~positive, float("-inf")).max(1).values  # (N,)
    i2t_rank = (sim.masked_fill(positive, float("-inf")) > best_own[:, None]).sum(1)
    target = sim[own, torch.arange(m)]  # (M,)
    t2i_rank = (sim > target[None, :]).sum(0)
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((i2t_rank < k).double().mean())
        out[f"t2i_R@{k}"] = float((t2i_rank < k).double().mean())
    return out


def matching_accuracy(img: torch.Tensor, txt: torch.Tensor, batch: int) -> dict[str, float]:
    """In-batch image→text and text→image accuracy of aligned pairs ``img[i]``/``txt[i]``."""
    hits_i2t = hits_t2i = 0
    for s in range(0, img.shape[0], batch):
        sim = img[s : s + batch].double() @ txt[s : s + batch].double().T
        idx = torch.arange(sim.shape[0])
        hits_i2t += int((sim.argmax(1) == idx).sum())
        hits_t2i += int((sim.argmax(0) == idx).sum())
    n = img.shape[0]
    return {"i2t_accuracy": hits_i2t / n, "t2i_accuracy": hits_t2i / n}


def retrieval_metrics(
    clip: Any,
    data: Sequence[CaptionedImage],
    batch: int = 32,
    images: Callable[[str], np.ndarray] | None = None,
) -> dict[str, float]:
    """Recall@1/5/10 both ways and matching accuracy of ``clip`` on ``data`` (its own ``R@1``
    mean, ``mean_R@1``, is what fine-tuning keeps the best checkpoint by)."""
    from vlmrm.tune.eval.metrics import embed_items

    items = [(d.image, c) for d in data for c in d.captions]
    clip.clear_text_cache()
    img_emb, txt_emb = embed_items(clip, items, images)
    img = torch.stack([img_emb[d.image] for d in data])
    caps = [c for d in data for c in d.captions]
    txt = torch.stack([txt_emb[c] for c in caps])
    owner = [i for i, d in enumerate(data) for _ in d.captions]
    out = recall_at_k(img, txt, owner)
    first = torch.stack([txt_emb[d.captions[0]] for d in data])
    out.update(matching_accuracy(img, first, batch))
    out["mean_R@1"] = (out["i2t_R@1"] + out["t2i_R@1"]) / 2
    out["n_images"], out["n_captions"] = len(data), len(caps)
    return out
