"""Caption-and-rerank: N candidate captions from any captioner, ordered by a CLIP reward.

The candidates come from our CLIP-prefix captioner (:func:`captioner_candidates`: N-beam
search, all beams) or from a ``transformers`` image-to-text model such as BLIP
(:func:`hf_candidates`, weights from the Hugging Face cache). The reward is RLCF's
``2.5·max(cos, 0)`` from one or several (possibly preference-tuned) reward CLIPs
(:class:`~vlmrm.tta.core.feedback.CLIPFeedback`); the best candidate is the answer. This is the
test-time counterpart of tuning a reward model: a better reward picks better captions
without touching the captioner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from vlmrm.caption.captioner import EMPTY, ClipCaptioner
from vlmrm.errors import ConfigError


def captioner_candidates(
    captioner: ClipCaptioner, images: Sequence[Any], n: int
) -> list[list[str]]:
    """``n`` captions per image by ``n``-beam search (all beams), lower-cased."""
    out = []
    for im in images:
        prefix = captioner.prefix(captioner.embed_images(im))
        out.append([c.text.lower() for c in captioner.generate(prefix, n, beams=n)[0]])
    return out


def load_hf_captioner(name: str, device: torch.device | str = "cpu") -> tuple[Any, Any]:
    """A ``transformers`` image-to-text model (BLIP...) and its processor, from the cache or a folder."""
    import transformers

    local = os.path.isdir(os.path.expanduser(name))
    path = os.path.expanduser(name) if local else name
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    auto = (
        getattr(transformers, "AutoModelForImageTextToText", None)
        or transformers.AutoModelForVision2Seq
    )
    try:
        processor = transformers.AutoProcessor.from_pretrained(
            path, local_files_only=offline and not local
        )
        model = auto.from_pretrained(path, local_files_only=offline and not local)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the image-to-text model {name!r} ({str(exc).splitlines()[0]}); put its weights "
            f"in the Hugging Face cache (huggingface-cli download {name}) or give a local folder"
        ) from None
    return model.to(device).eval(), processor


@torch.no_grad()
def hf_candidates(
    model: Any, processor: Any, images: Sequence[Any], n: int, max_tokens: int = 30
) -> list[list[str]]:
    """``n`` captions per image from a ``transformers`` image-to-text model by ``n``-beam search."""
    out = []
    for im in images:
        inputs = processor(images=im, return_tensors="pt").to(model.device)
        ids = model.generate(
            **inputs, num_beams=n, num_return_sequences=n, max_new_tokens=max_tokens
        )
        out.append(
            [t.strip().lower() for t in processor.batch_decode(ids, skip_special_tokens=True)]
        )
    return out


def rerank_captions(
    feedback: Any, images: Sequence[Any], candidates: Sequence[Sequence[str]]
) -> list[list[tuple[str, float]]]:
    """Each image's candidates with their rewards, best first (stable for ties)."""
    if len(images) != len(candidates):
        raise ConfigError(f"{len(candidates)} candidate lists for {len(images)} images")
    ranked = []
    for im, cands in zip(images, candidates, strict=True):
        if not cands:
            raise ConfigError("every image needs at least one candidate caption")
        img = feedback.embed_images(torch.as_tensor(im).unsqueeze(0))
        txt = feedback.embed_texts([c or EMPTY for c in cands])
        scores = feedback.rewards(img, txt)[0].tolist()
        order = sorted(range(len(cands)), key=lambda j: -scores[j])
        ranked.append([(cands[j], float(scores[j])) for j in order])
    for m in feedback.models:
        m.clear_text_cache()
    return ranked


#: The package exports this function as ``vlmrm.caption.rerank_captions``: ``rerank`` is the name of
#: its command module (``python -m vlmrm.caption.rerank``), which Python binds to the package
#: attribute once imported, so that name would mean either.
rerank = rerank_captions
