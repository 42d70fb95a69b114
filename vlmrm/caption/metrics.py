"""Caption metrics: the COCO caption metrics (pycocoevalcap) and CLIPScore / RefCLIPScore.

* BLEU-1..4, METEOR, ROUGE-L and CIDEr with ``pycocoevalcap``, on captions tokenized by
  its PTB tokenizer (Java), as the COCO caption evaluation does. METEOR and the PTB
  tokenizer need Java: without it METEOR is skipped (one line on stderr) and captions are
  tokenized in Python (lower case, punctuation dropped) — close to, not identical with, the
  official numbers.
* CLIPScore (Hessel et al., 2021): ``2.5·max(cos(image, "A photo depicts " + caption), 0)``
  with ViT-B/32; RefCLIPScore: the harmonic mean of CLIPScore and
  ``max(max_r cos(caption, reference_r), 0)`` (references with the same prefix). Computed
  with our own encoders (:meth:`~vlmrm.models.ClipModel.embed_images` /
  :meth:`~vlmrm.models.ClipModel.embed_texts`) and the reward core's :func:`~vlmrm.reward.clip_score`.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Mapping, Sequence

import torch

from vlmrm.models import ClipModel
from vlmrm.reward import CLIPSCORE_SCALE, clip_score

#: Hessel et al.'s text prompt in front of every caption.
CLIPSCORE_PREFIX = "A photo depicts"
#: The metrics' names in ``metrics.json``, in the order they are printed.
COCO_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def has_java() -> bool:
    """Whether METEOR and the PTB tokenizer can run."""
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """Lower-cased words without punctuation (the PTB tokenizer's effect, without Java)."""
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()))


def _tokenized(captions: Mapping[str, Sequence[str]], java: bool) -> dict[str, list[str]]:
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        raw = {k: [{"caption": c} for c in v] for k, v in captions.items()}
        return PTBTokenizer().tokenize(raw)
    return {k: [simple_tokenize(c) for c in v] for k, v in captions.items()}


def coco_metrics(
    candidates: Mapping[object, str],
    references: Mapping[object, Sequence[str]],
    meteor: bool = True,
) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (× 100) of one caption per image against its references.

    ``candidates`` and ``references`` are keyed by image id (the same keys). CIDEr's
    document frequencies come from these references, as in the COCO evaluation, so it is
    a corpus-level number: compare runs on the same images.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = [str(k) for k in candidates]
    if not keys:
        return {}
    java = has_java()
    res = _tokenized({str(k): [c] for k, c in candidates.items()}, java)
    gts = _tokenized({str(k): list(references[k]) for k in candidates}, java)
    res = {k: [c if c.strip() else "<empty>"] for k, (c, *_) in res.items()}
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, b in enumerate(bleu, 1):
        out[f"BLEU-{n}"] = 100.0 * float(b)
    if meteor and java:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            out["METEOR"] = 100.0 * float(scorer.compute_score(gts, res)[0])
        finally:
            _close_meteor(scorer)
    elif meteor:
        print("note: METEOR skipped (it needs Java: install a JRE to get it)", file=sys.stderr)
    out["ROUGE-L"] = 100.0 * float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = 100.0 * float(Cider().compute_score(gts, res)[0])
    return out


def _close_meteor(scorer) -> None:
    """End the METEOR Java process (pycocoevalcap only does it at garbage collection)."""
    proc = getattr(scorer, "meteor_p", None)
    if proc is not None:
        with scorer.lock:
            proc.stdin.close()
            proc.kill()
            proc.wait()


def _prefixed(captions: Sequence[str]) -> list[str]:
    return [f"{CLIPSCORE_PREFIX} {c.strip()}".strip() for c in captions]


def clip_scores(
    clip: ClipModel,
    image_embeddings: torch.Tensor,
    captions: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
    scale: float = CLIPSCORE_SCALE,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CLIPScore ``(N,)`` of caption ``i`` for image ``i`` and, given references, RefCLIPScore ``(N,)``.

    ``image_embeddings``: the images' unit embeddings by ``clip`` (``clip.embed_images``).
    """
    text = clip.embed_texts(_prefixed(captions))
    cos = (image_embeddings.float().to(text.device) * text).sum(-1)
    score = clip_score(cos, scale)
    if references is None:
        return score, None
    ref_sim = []
    for t, refs in zip(text, references, strict=True):
        r = clip.embed_texts(_prefixed(refs))
        ref_sim.append((r @ t).max().clamp_min(0.0))
    ref = torch.stack(ref_sim)
    harmonic = 2 * score * ref / (score + ref).clamp_min(1e-12)
    return score, torch.where(score + ref > 0, harmonic, torch.zeros_like(score))
