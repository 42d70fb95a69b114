"""``task=caption``: adapt a CLIP-prefix captioner to every test image of a caption dataset.

Every record holds the zero-shot and adapted captions, the mean reward of each step and
both captions' CLIPScore and RefCLIPScore (computed as the image is done, so a resumed run
keeps them); the COCO metrics are computed over all records at the end
(:func:`caption_metrics`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write_json
from vlmrm.tta.jobs.coord import coord_group, dist_info
from vlmrm.tta.jobs.job import Job, Tally, load_models, note, order_of, prefetch, start_job, timed
from vlmrm.tta.jobs.report import save_metrics
from vlmrm.tta.jobs.results import finish

if TYPE_CHECKING:  # the settings are the command layer's; a run only reads them
    from vlmrm.tta.settings import TTASettings


def run_caption(cfg: TTASettings) -> dict[str, Any]:
    """Caption every test image before and after adaptation; returns the metrics side by side."""
    from vlmrm.caption.data import load_captions
    from vlmrm.distributed import run_on_main, run_together

    info = dist_info()
    group = coord_group()
    settings, data = run_together(
        lambda: (cfg.method_settings(), load_captions(cfg.data, cfg.images, cfg.split)), info, group
    )
    order = order_of(len(data), cfg)
    job = start_job(cfg, info, cfg.method(settings), order, [str(i) for i in order])
    if info.is_main:
        job.announce(f"RLCF caption: {len(data)} images ({data.source})")
        if cfg.ema and info.enabled:
            note(
                "note: ema=true — every rank keeps its own moving average (a one-process run differs)"
            )
    new: list[tuple[dict, float]] = []
    if job.pending:  # a collective: every rank loads, even with an empty shard
        tta, metric = run_together(lambda: load_caption_models(cfg, settings, info), info, group)
        if job.mine:
            new = _adapt_shard(job, tta, metric, data)
    kept, seconds = finish(job.out, info, job.done, new, job.keys)
    return run_on_main(
        lambda: caption_metrics(job.out, settings, kept, seconds, cfg.meteor), info, group
    )


def load_caption_models(cfg: TTASettings, settings: Any, info: Any = None) -> tuple[Any, Any]:
    """The :class:`~vlmrm.tta.captioning.adapt.CaptionTTA` and the CLIPScore model on this rank's device."""
    from vlmrm.caption.captioner import ClipCaptioner, load_mapper
    from vlmrm.caption.lm import load_lm
    from vlmrm.models import load_clip
    from vlmrm.tta.captioning.adapt import CaptionTTA

    policy, feedback = load_models(cfg, info)
    lm, vocab = load_lm(cfg.lm, policy.device, cfg.tokenizer)
    captioner = ClipCaptioner(
        policy, lm, vocab, load_mapper(cfg.captioner, policy.device), cfg.max_tokens
    )
    pairs = zip(cfg.reward_models(), feedback.models, strict=True)
    metric = next((m for key, m in pairs if key == (cfg.metric_model, cfg.metric_pretrained)), None)
    if metric is None:
        metric = load_clip(cfg.metric_model, device=policy.device, precision="auto",
                           pretrained=cfg.metric_pretrained, resize_mode="center_crop")  # fmt: skip
    return CaptionTTA(captioner, feedback, settings), metric


def _record(
    i: int, res: Any, data: Any, scores: dict[str, float], seconds: float
) -> dict[str, Any]:
    image_id = data.image_ids[i]
    return {
        "key": str(i), "index": i, "image": os.fspath(data.image_paths[i]),
        "image_id": image_id, "references": data.references[i],
        "zeroshot_caption": res.zeroshot_caption, "caption": res.caption,
        "rewards": res.rewards, "samples": res.samples, **scores, "seconds": round(seconds, 4),
    }  # fmt: skip


def score_captions(
    metric: Any, images: Any, results: list, references: list[list[str]]
) -> list[dict[str, float]]:
    """CLIPScore and RefCLIPScore of each image's zero-shot and adapted caption."""
    import torch

    from vlmrm.caption.metrics import clip_scores

    emb = torch.cat([metric.embed_images(im) for im in images])  # sizes may differ
    out: list[dict[str, float]] = [{} for _ in results]
    for prefix, attr in (("zeroshot_", "zeroshot_caption"), ("", "caption")):
        cs, ref = clip_scores(metric, emb, [getattr(r, attr) for r in results], references)
        for j in range(len(results)):
            out[j][f"{prefix}clipscore"] = round(float(cs[j]), 5)
            out[j][f"{prefix}refclipscore"] = round(float(ref[j]), 5)
    metric.clear_text_cache()
    return out


def _adapt_shard(job: Job, tta: Any, metric: Any, data: Any) -> list[tuple[dict, float]]:
    """Adapt this rank's images ``batch_size`` at a time; returns ``(record, seconds)`` of each."""
    from vlmrm.runtime.images import load_image

    shard = job.batches()
    loaded = prefetch(lambda b: [load_image(data.image_paths[i]) for i in b], shard)
    with Tally(
        job, "RLCF caption", lambda r: (r["zeroshot_clipscore"], r["clipscore"]),
        lambda zs, ad: f"CLIPScore zero-shot {zs:.3f} · RLCF {ad:.3f}",
    ) as tally:  # fmt: skip
        for batch in shard:
            images = next(loaded)
            results, dt = timed(tta.adapt_batch, batch, images, batch)
            scores = score_captions(metric, images, results, [data.references[i] for i in batch])
            recs = [
                _record(i, r, data, s, dt) for i, r, s in zip(batch, results, scores, strict=True)
            ]
            tally.add(recs, dt)
    return tally.new


#: The captions of a caption run in the COCO results format (``[{"image_id", "caption"}]``).
CAPTIONS = "captions.json"
ZEROSHOT_CAPTIONS = "captions_zeroshot.json"


def caption_metrics(
    out: Path, settings: Any, kept: list[dict], seconds: list[float], meteor: bool = True
) -> dict[str, Any]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr, CLIPScore and RefCLIPScore before and after adaptation.

    Also writes the captions in the COCO results format (``captions.json``,
    ``captions_zeroshot.json``) for the official evaluation scripts.
    """
    from vlmrm.caption.metrics import COCO_METRICS, coco_metrics

    if not kept:
        raise ConfigError("no images selected (check limit=)")
    refs = {r["key"]: r["references"] for r in kept}
    zs = coco_metrics({r["key"]: r["zeroshot_caption"] for r in kept}, refs, meteor)
    ad = coco_metrics({r["key"]: r["caption"] for r in kept}, refs, meteor)
    n = len(kept)
    for name in ("clipscore", "refclipscore"):
        zs[name] = 100.0 * sum(r[f"zeroshot_{name}"] for r in kept) / n
        ad[name] = 100.0 * sum(r[name] for r in kept) / n
    metrics = {"n": n, **{f"zeroshot_{k}": v for k, v in zs.items()}, **ad}
    for name, key in ((CAPTIONS, "caption"), (ZEROSHOT_CAPTIONS, "zeroshot_caption")):
        atomic_write_json(out / name, [{"image_id": r["image_id"], "caption": r[key]} for r in kept])
    names = [m for m in COCO_METRICS if m in ad] + ["clipscore", "refclipscore"]
    labels = {"clipscore": "CLIPScore", "refclipscore": "RefCLIPScore"}
    rows = [(labels.get(m, m), zs[m], ad[m]) for m in names]
    return save_metrics(out, metrics, settings, seconds, "image", f"RLCF captioning — {n} images", rows)
