"""``task=classify``: adapt to every test image of a class-folder dataset, record, report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmrm.errors import ConfigError
from vlmrm.tta.jobs.coord import coord_group, dist_info
from vlmrm.tta.jobs.job import Job, Tally, load_models, note, order_of, prefetch, start_job, timed
from vlmrm.tta.jobs.report import save_metrics
from vlmrm.tta.jobs.results import finish

if TYPE_CHECKING:  # the settings are the command layer's; a run only reads them
    from vlmrm.tta.settings import TTASettings


def run_classify(cfg: TTASettings) -> dict[str, Any]:
    """Adapt to every test image of a class-folder dataset; returns the metrics.

    Under torchrun (a process group is up) every rank adapts its shard of the pending
    images and gets the metrics back; rank 0 alone writes the results and prints.
    """
    from vlmrm.datasets.classes import load_class_folders
    from vlmrm.datasets.coop import is_coop_dataset, load_coop_dataset
    from vlmrm.distributed import run_on_main, run_together
    from vlmrm.tta.classification.adapt import ClassificationTTA

    info = dist_info()
    group = coord_group()

    def load_data():
        if is_coop_dataset(cfg.data):
            return load_coop_dataset(cfg.data, cfg.images, cfg.split, cfg.classnames)
        return load_class_folders(cfg.data, cfg.classnames)

    settings, data = run_together(lambda: (cfg.method_settings(), load_data()), info, group)
    order = order_of(len(data), cfg)
    job = start_job(cfg, info, cfg.method(settings), order, [data.samples[i][0] for i in order])
    if info.is_main:
        _announce(job, data)

    def load():
        if not job.mine:  # nothing left for this rank (a resume): it still joins the agreement
            return None, None
        policy, feedback = load_models(cfg, info)
        tta = ClassificationTTA(policy, feedback, data.classnames, settings)
        if cfg.baseline != "tpt":
            return tta, None
        return tta, ClassificationTTA(policy, feedback, data.classnames, cfg.baseline_settings())

    tta, baseline = run_together(load, info, group) if job.pending else (None, None)
    new = _adapt_shard(job, tta, data, baseline) if job.mine else []
    kept, seconds = finish(job.out, info, job.done, new, job.keys)
    return run_on_main(lambda: classify_metrics(cfg.mode, job.out, settings, kept, seconds), info, group)


def _announce(job: Job, data: Any) -> None:
    """Rank 0: the dataset, the progress so far, and notes on what differs from a plain run."""
    job.announce(
        f"RLCF classify: {len(data)} images, {len(data.classnames)} classes "
        f"(names: {data.names_source})"
    )
    if data.empty:
        note(f"note: {len(data.empty)} class folder(s) have no images, e.g. {data.empty[0]!r}")
    if job.cfg.ema and (job.done or job.info.enabled):
        why = "on resume" if job.done else "on every rank (a one-process run differs)"
        note(f"note: ema=true — the moving average starts from the policy {why}")


def _record(i: int, res: Any, data: Any, seconds: float) -> dict[str, Any]:
    """The results line of image ``i``."""
    rel, label = data.samples[i]
    return {
        "key": rel, "index": i, "label": label, "class": data.classnames[label],
        "zeroshot_pred": res.zeroshot_pred, "pred": res.pred,
        "zeroshot_correct": res.zeroshot_pred == label, "correct": res.pred == label,
        "zeroshot_top5": res.topk(5, zeroshot=True), "top5": res.topk(5),
        "rewards": [round(r, 5) for r in res.rewards], "seconds": round(seconds, 4),
    }  # fmt: skip


def _adapt_shard(job: Job, tta: Any, data: Any, baseline: Any = None) -> list[tuple[dict, float]]:
    """Adapt this rank's images, ``batch_size`` at a time; returns ``(record, seconds)`` of each.

    With a ``baseline`` (TPT) each image is adapted by it too, from the same seeded views;
    its prediction joins the record (``tpt_pred``, ``tpt_correct``, ``tpt_top5``).
    """
    from vlmrm.runtime.images import load_image
    from vlmrm.tta.core.rlcf import seed_for

    cfg, mine = job.cfg, job.mine
    images = prefetch(lambda i: load_image(data.path(i)), mine)
    with Tally(
        job, "RLCF", lambda r: (r["zeroshot_correct"], r["correct"]),
        lambda zs, ad: f"zero-shot {100 * zs:.1f}% · RLCF {100 * ad:.1f}%",
    ) as tally:  # fmt: skip
        for idx in job.batches():
            imgs = [next(images) for _ in idx]
            seeds = [seed_for(cfg.seed, i) for i in idx]
            results, dt = timed(tta.adapt_batch, idx, imgs, seeds)
            records = [_record(i, res, data, dt) for i, res in zip(idx, results, strict=True)]
            if baseline is not None:
                for rec, res in zip(records, baseline.adapt_batch(imgs, seeds), strict=True):
                    rec.update(tpt_pred=res.pred, tpt_correct=res.pred == rec["label"], tpt_top5=res.topk(5))
            tally.add(records, dt)
    return tally.new


def classify_metrics(
    mode: str, out: Path, settings: Any, kept: list[dict], seconds: list[float]
) -> dict[str, Any]:
    """Top-1/top-5 accuracy before and after adaptation over this run's records."""
    n = len(kept)
    if n == 0:
        raise ConfigError("no samples selected (check limit=)")
    top5 = [(r["label"] in r["zeroshot_top5"], r["label"] in r["top5"]) for r in kept]
    metrics = {
        "n": n,
        "zeroshot_top1": 100.0 * sum(r["zeroshot_correct"] for r in kept) / n,
        "top1": 100.0 * sum(r["correct"] for r in kept) / n,
        "zeroshot_top5": 100.0 * sum(a for a, _ in top5) / n,
        "top5": 100.0 * sum(b for _, b in top5) / n,
    }
    rows = [
        ("top-1 %", metrics["zeroshot_top1"], metrics["top1"]),
        ("top-5 %", metrics["zeroshot_top5"], metrics["top5"]),
    ]
    title = f"RLCF classification ({mode}) — {n} images"
    if all("tpt_correct" in r for r in kept):  # the TPT baseline ran beside (baseline=tpt)
        metrics["tpt_top1"] = 100.0 * sum(r["tpt_correct"] for r in kept) / n
        metrics["tpt_top5"] = 100.0 * sum(r["label"] in r["tpt_top5"] for r in kept) / n
        rows = [(rows[0][0], rows[0][1], metrics["tpt_top1"], rows[0][2]),
                (rows[1][0], rows[1][1], metrics["tpt_top5"], rows[1][2])]  # fmt: skip
        return save_metrics(out, metrics, settings, seconds, "image", title, rows, ("zero-shot", "TPT", "RLCF"))
    return save_metrics(out, metrics, settings, seconds, "image", title, rows)
