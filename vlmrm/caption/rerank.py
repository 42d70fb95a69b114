"""``python -m vlmrm.caption.rerank key=value …`` — caption-and-rerank with a CLIP reward.

For every image of a caption dataset: N captions from a captioner (ours, ``captioner=``,
or a ``transformers`` image-to-text model, ``hf_model=``, e.g. BLIP from the cache), scored
by the reward CLIPs; the best one is the answer. ``<out>/reranked.jsonl`` lists every
image's candidates with their rewards, ``captions.json`` the reranked captions and
``captions_top_beam.json`` the captioner's own first choice (COCO results format), and
``metrics.json`` compares the two (BLEU, METEOR, ROUGE-L, CIDEr).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vlmrm.caption.settings import RerankSettings
from vlmrm.cli.args import Command, entry_point

COMMAND = Command(
    prog="python -m vlmrm.caption.rerank",
    settings=RerankSettings,
    summary=(
        "Caption-and-rerank: n captions per image from a captioner (ours: captioner=, or a "
        "transformers image-to-text model such as BLIP: hf_model=), reranked by CLIP reward "
        "2.5·max(cos, 0) (reward_model=, possibly preference-tuned). Writes the candidates, the "
        "reranked captions and metrics against the captioner's first choice to out=."
    ),
    examples=(
        "python -m vlmrm.caption.rerank data=/data/coco/dataset_coco.json images=/data/coco/images "
        "hf_model=Salesforce/blip-image-captioning-base n=5",
        "python -m vlmrm.caption.rerank data=ann.json captioner=mapper.safetensors "
        "reward_model=ViT-L-14 reward_pretrained=tuned.safetensors",
    ),
)


def _candidates(cfg: RerankSettings, images: list, device: Any) -> list[list[str]]:
    from vlmrm.caption.reranking import captioner_candidates, hf_candidates, load_hf_captioner

    if cfg.hf_model:
        model, processor = load_hf_captioner(cfg.hf_model, device)
        return hf_candidates(model, processor, images, cfg.n, cfg.max_tokens)
    from vlmrm.caption.captioner import ClipCaptioner, load_mapper
    from vlmrm.caption.lm import load_lm
    from vlmrm.models import load_clip

    clip = load_clip(cfg.model, device=device, pretrained=cfg.pretrained, precision=cfg.precision,
                     resize_mode="center_crop", backend=cfg.backend)  # fmt: skip
    lm, vocab = load_lm(cfg.lm, device, cfg.tokenizer)
    captioner = ClipCaptioner(clip, lm, vocab, load_mapper(cfg.captioner, device), cfg.max_tokens)
    return captioner_candidates(captioner, images, cfg.n)


def body(cfg: RerankSettings) -> int:
    import json

    from vlmrm.caption.data import load_captions
    from vlmrm.caption.metrics import coco_metrics
    from vlmrm.caption.reranking import rerank
    from vlmrm.models import load_clip, resolve_device
    from vlmrm.runtime.atomic import atomic_write_json, atomic_write_lines
    from vlmrm.runtime.images import load_image
    from vlmrm.tta.core.feedback import CLIPFeedback
    from vlmrm.tta.settings import reward_specs

    data = load_captions(cfg.data, cfg.images, cfg.split)
    keep = range(len(data) if cfg.limit is None else min(cfg.limit, len(data)))
    images = [load_image(data.image_paths[i]) for i in keep]
    device = resolve_device(None if cfg.device == "auto" else cfg.device)
    candidates = _candidates(cfg, images, device)
    models = [load_clip(s, device=device, pretrained=p, resize_mode="center_crop")
              for s, p in reward_specs(cfg.reward_model, cfg.reward_pretrained)]  # fmt: skip
    ranked = rerank(CLIPFeedback(models, cfg.reward_weights), images, candidates)
    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"image_id": data.image_ids[i], "image": os.fspath(data.image_paths[i]),
             "candidates": [{"caption": c, "reward": round(r, 5)} for c, r in ranked[j]],
             "top_beam": candidates[j][0], "caption": ranked[j][0][0]}
            for j, i in enumerate(keep)]  # fmt: skip
    atomic_write_lines(out / "reranked.jsonl", [json.dumps(r) for r in rows])
    for name, key in (("captions.json", "caption"), ("captions_top_beam.json", "top_beam")):
        atomic_write_json(
            out / name, [{"image_id": r["image_id"], "caption": r[key]} for r in rows]
        )
    refs = {str(j): data.references[i] for j, i in enumerate(keep)}
    before = coco_metrics({str(j): r["top_beam"] for j, r in enumerate(rows)}, refs, cfg.meteor)
    after = coco_metrics({str(j): r["caption"] for j, r in enumerate(rows)}, refs, cfg.meteor)
    atomic_write_json(out / "metrics.json", {"n": len(rows), **{f"top_beam_{k}": v for k, v in before.items()},
                                             **after})  # fmt: skip
    from vlmrm.tta.jobs.report import print_table

    print_table(f"caption-and-rerank — {len(rows)} images, {cfg.n} candidates",
                [(k, before[k], after[k]) for k in after], f"results: {os.fspath(out)}",
                ("top beam", "reranked"))  # fmt: skip
    return 0


main = entry_point(COMMAND, body)

if __name__ == "__main__":
    raise SystemExit(main())
