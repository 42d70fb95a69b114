"""The report of a TTA run: zero-shot vs adapted metrics, ``metrics.json`` and a table."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write_json
from vlmrm.runtime.console import make_console
from vlmrm.tta.results import RESULTS

METRICS = "metrics.json"


def print_table(
    title: str, rows: list[tuple], extra: str = "", columns: tuple[str, ...] = ("zero-shot", "RLCF")
) -> None:
    """A rich table of ``(metric, zero-shot, [TPT,] RLCF)`` rows with RLCF − zero-shot."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for col in columns:
        table.add_column(col, justify="right")
    table.add_column("Δ", justify="right")
    for name, *vals in rows:
        table.add_row(name, *(f"{v:.2f}" for v in vals), f"{vals[-1] - vals[0]:+.2f}")
    console = make_console()
    console.print(table)
    if extra:
        console.print(extra)


def save_metrics(
    out: Path,
    metrics: dict[str, Any],
    settings: Any,
    seconds: list[float],
    unit: str,
    title: str,
    rows: list[tuple],
    columns: tuple[str, ...] = ("zero-shot", "RLCF"),
) -> dict[str, Any]:
    """``metrics`` plus the time per ``unit`` (of this session) and the settings: written to
    ``metrics.json``, printed as a table (``title``, ``rows``) and returned."""
    metrics = {
        **metrics,
        "seconds_per_sample": (sum(seconds) / len(seconds)) if seconds else None,
        "settings": asdict(settings),
    }
    atomic_write_json(out / METRICS, metrics)
    speed = f"{metrics['seconds_per_sample']:.3f} s/{unit} this session" if seconds else "all resumed"
    print_table(title, rows, f"{speed}; results: {os.fspath(out / RESULTS)}", columns)
    return metrics


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


def retrieve_metrics(
    direction: str, out: Path, settings: Any, kept: list[dict], seconds: list[float]
) -> dict[str, Any]:
    """Recall@1/5/10 before and after adaptation over this run's records."""
    from vlmrm.tta.retrieve import recall_at

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
