"""``task=retrieve``: adapt to every query of a caption dataset against a cached gallery."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmrm.errors import ConfigError
from vlmrm.tta.jobs.coord import coord_group, dist_info
from vlmrm.tta.jobs.job import (
    Job,
    Tally,
    bar_desc,
    load_models,
    note,
    order_of,
    prefetch,
    start_job,
    timed,
)
from vlmrm.tta.jobs.report import save_metrics
from vlmrm.tta.jobs.results import abspath, finish

if TYPE_CHECKING:  # the settings are the command layer's; a run only reads them
    from vlmrm.tta.settings import TTASettings

GALLERY = "gallery.pt"


def run_retrieve(cfg: TTASettings) -> dict[str, Any]:
    """Adapt to every query of a caption dataset; returns Recall@1/5/10 before and after.

    Under torchrun every rank adapts its shard of the pending queries against the same
    gallery and gets the metrics back; rank 0 alone writes the results and prints.
    """
    from vlmrm.distributed import run_on_main, run_together
    from vlmrm.tta.retrieval.adapt import RetrievalTTA
    from vlmrm.tta.retrieval.data import load_retrieval

    info = dist_info()
    group = coord_group()
    settings, data = run_together(
        lambda: (cfg.method_settings(), load_retrieval(cfg.data, cfg.images, cfg.split, caption_norm=cfg.caption_norm)), info, group
    )
    direction = settings.direction
    n_queries = len(data.image_paths) if direction == "i2t" else len(data.captions)
    order = order_of(n_queries, cfg)
    job = start_job(cfg, info, cfg.method(settings), order, [str(q) for q in order])
    if info.is_main:
        _announce(job, data, direction)
    new: list[tuple[dict, float]] = []  # (record, seconds) adapted by this process
    if job.pending:  # every rank takes part in the gallery, even with an empty shard
        policy, feedback = run_together(lambda: load_models(cfg, info), info, group)
        gallery = _gallery(cfg, job.out, policy, feedback, data, info)
        tta = run_together(lambda: RetrievalTTA(policy, feedback, gallery, settings), info, group)
        if job.mine:
            new = _adapt_shard(job, tta, data, direction)
    kept, seconds = finish(job.out, info, job.done, new, job.keys)
    return run_on_main(lambda: retrieve_metrics(direction, job.out, settings, kept, seconds), info, group)


def _announce(job: Job, data: Any, direction: str) -> None:
    """Rank 0: the dataset, the progress so far, and notes on what differs from a plain run."""
    job.announce(
        f"RLCF retrieve ({direction}): {len(data.image_paths)} images, {len(data.captions)} "
        f"captions ({data.source})"
    )
    if job.cfg.ema and job.info.enabled:
        note("note: ema=true — every rank keeps its own moving average (a one-process run differs)")


def _gallery(cfg: TTASettings, out: Path, policy: Any, feedback: Any, data: Any, info: Any):
    """Embed the gallery once; cached in ``out`` so a resumed run skips it.

    Under torchrun every rank embeds its share of the batches and all exchange them
    (:func:`~vlmrm.tta.retrieval.adapt.build_gallery`); rank 0 alone writes and reads the cache
    and sends a cached gallery to the others, so the nodes need not share a filesystem for it.
    """
    from vlmrm.distributed import run_on_main
    from vlmrm.runtime.cache import read_cache, write_cache
    from vlmrm.runtime.images import load_image
    from vlmrm.tta.retrieval.adapt import Gallery, build_gallery

    key = {
        "policy": policy.name, "reward": feedback.names, "images": len(data.image_paths),
        "captions": len(data.captions), "data": abspath(cfg.data), "split": cfg.split,
    }  # fmt: skip
    cache = out / GALLERY
    names = ("policy_image", "policy_text", "reward_image", "reward_text")

    def cached() -> Gallery | None:
        saved = read_cache(cache, key, required=names)  # damaged: a warning, then rebuilt
        return None if saved is None else Gallery(*(saved[n] for n in names))

    g = run_on_main(cached, info, coord_group())
    if g is not None:
        return g
    from tqdm.auto import tqdm

    def progress(it):
        return tqdm(it, desc=bar_desc("embedding gallery", info), disable=not cfg.progress,
                    dynamic_ncols=True, position=info.local_rank)  # fmt: skip

    g = build_gallery(policy, feedback, data.image_paths, data.captions, load=load_image,
                      progress=progress, info=info)  # fmt: skip
    if info.is_main:
        write_cache(cache, key, {
            "policy_image": g.policy_image.cpu(), "policy_text": g.policy_text.cpu(),
            "reward_image": [e.cpu() for e in g.reward_image],
            "reward_text": [e.cpu() for e in g.reward_text],
        })  # fmt: skip
    return g


def _record(q: int, res: Any, data: Any, direction: str, seconds: float) -> dict[str, Any]:
    """The results line of query ``q``."""
    from vlmrm.tta.retrieval.adapt import best_rank

    if direction == "i2t":
        targets, query = data.img2txt[q], os.fspath(data.image_paths[q])
    else:
        targets, query = [data.txt2img[q]], data.captions[q]
    return {
        "key": str(q), "index": q, "query": query, "targets": targets,
        "zeroshot_rank": best_rank(res.zeroshot_scores, targets), "rank": best_rank(res.scores, targets),
        "top10": res.scores.topk(min(10, res.scores.numel())).indices.tolist(),
        "rewards": [round(r, 5) for r in res.rewards], "seconds": round(seconds, 4),
    }  # fmt: skip


def _adapt_shard(job: Job, tta: Any, data: Any, direction: str) -> list[tuple[dict, float]]:
    """Adapt this rank's queries, ``batch_size`` at a time (each with independent weights);
    returns ``(record, seconds)`` of each."""
    from vlmrm.runtime.images import load_image

    queries = prefetch(lambda q: load_image(data.image_paths[q]), job.mine) if direction == "i2t" else None
    with Tally(
        job, f"RLCF {direction}", lambda r: (r["zeroshot_rank"] == 0, r["rank"] == 0),
        lambda zs, ad: f"R@1 zero-shot {100 * zs:.1f}% · RLCF {100 * ad:.1f}%",
    ) as tally:  # fmt: skip
        for qs in job.batches():
            if direction == "i2t":
                results, dt = timed(tta.adapt_images, qs, [next(queries) for _ in qs], qs)
            else:
                results, dt = timed(tta.adapt_texts, qs, [data.captions[q] for q in qs], qs)
            records = [_record(q, res, data, direction, dt) for q, res in zip(qs, results, strict=True)]
            tally.add(records, dt)
    return tally.new


def retrieve_metrics(
    direction: str, out: Path, settings: Any, kept: list[dict], seconds: list[float]
) -> dict[str, Any]:
    """Recall@1/5/10 before and after adaptation over this run's records."""
    from vlmrm.tta.retrieval.adapt import recall_at

    if not kept:
        raise ConfigError("no queries selected (check limit=)")
    zs = recall_at([r["zeroshot_rank"] for r in kept])
    ad = recall_at([r["rank"] for r in kept])
    metrics = {
        "n": len(kept),
        "direction": direction,
        **{f"zeroshot_{k}": v for k, v in zs.items()},
        **ad,
    }
    arrow = "image→text" if direction == "i2t" else "text→image"
    title = f"RLCF retrieval ({arrow}) — {len(kept)} queries"
    rows = [(f"{k} %", zs[k], ad[k]) for k in ad]
    return save_metrics(out, metrics, settings, seconds, "query", title, rows)
