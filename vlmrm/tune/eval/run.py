"""The work of ``python -m vlmrm.tune.eval``: load the model(s), score every held-out set,
print the model beside the untuned one, write ``metrics.json``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from vlmrm.models import load_clip
from vlmrm.runtime.atomic import atomic_write_json
from vlmrm.tune.data.images import ImageCache
from vlmrm.tune.eval.metrics import listwise_top1, pairwise_accuracy, set_scores, vsr_accuracy
from vlmrm.tune.eval.settings import EvalSettings
from vlmrm.tune.vsr.relations import HUMAN_ACCURACY
from vlmrm.tune.vsr.rows import load_vsr


def _metrics(cfg: EvalSettings, clip: Any, images: ImageCache) -> dict[str, Any]:
    """Every requested metric of one model (nested: ``vsr/<file>``, ``pref/<file>``, ``retrieval``)."""
    from vlmrm.tune.data.records import load_ranked_sets

    out: dict[str, Any] = {}
    root = cfg.vsr_image_root or None
    for k, path in enumerate(cfg.vsr):
        rows = load_vsr(path, root)
        dev_path = cfg.vsr_dev[0 if len(cfg.vsr_dev) == 1 else k] if cfg.vsr_dev else None
        dev = load_vsr(dev_path, root) if dev_path else []
        clip.clear_text_cache()
        out[f"vsr/{path}"] = {
            "swap": vsr_accuracy(clip, rows, "swap", images=images),
            "threshold": vsr_accuracy(clip, rows, "threshold", images=images, dev=dev),
        }
    for path in cfg.pref:
        sets = load_ranked_sets(path, cfg.image_root or None)
        clip.clear_text_cache()
        scores = set_scores(clip, sets, images)
        out[f"pref/{path}"] = {**pairwise_accuracy(sets, scores), "top1": listwise_top1(sets, scores)}
    if cfg.captions:
        from vlmrm.tune.data.captions import load_caption_data, load_split
        from vlmrm.tune.eval.retrieval import retrieval_metrics

        data = load_caption_data(cfg.captions, cfg.image_root or None)
        if cfg.captions_split:
            data = load_split(cfg.captions_split, data)["test"]
        out["retrieval"] = retrieval_metrics(clip, data, images=images)
    return out


def _rows(m: dict[str, Any]) -> list[tuple[str, float]]:
    """The printed ``(name, value)`` rows of one model's metrics."""
    rows = []
    for key, v in m.items():
        if key.startswith("vsr/"):
            name = Path(key[4:]).parent.name + "/" + Path(key[4:]).stem
            rows.append((f"VSR {name} swap acc", v["swap"]["accuracy"]))
            rows.append((f"VSR {name} threshold acc ({v['threshold']['threshold_source']})", v["threshold"]["accuracy"]))
            rows.append((f"VSR {name} always-true baseline", v["threshold"]["baseline_prefer_unmodified"]))
        elif key.startswith("pref/"):
            rows.append((f"pref {Path(key[5:]).name} balanced acc", v["accuracy"]))
            rows.append((f"pref {Path(key[5:]).name} prefer-unmodified baseline", v["baseline_prefer_unmodified"]))
        else:
            rows += [(f"retrieval {k}", v[k]) for k in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10")]
    return rows


def _print(model: dict[str, Any], base: dict[str, Any] | None, per_relation: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="held-out evaluation (%)")
    table.add_column("metric")
    if base is not None:
        table.add_column("untuned", justify="right")
    table.add_column("model", justify="right")
    if base is not None:
        table.add_column("Δ", justify="right")
    base_rows = dict(_rows(base)) if base is not None else {}
    for name, v in _rows(model):
        cells = [f"{100 * v:.1f}"]
        if base is not None:
            b = base_rows.get(name, math.nan)
            cells = [f"{100 * b:.1f}", *cells, f"{100 * (v - b):+.1f}"]
        table.add_row(name, *cells)
    console = Console()
    console.print(table)
    if any(k.startswith("vsr/") for k in model):
        console.print(f"VSR human accuracy: {HUMAN_ACCURACY}% (CLIP-size models score about 56%)")
    if not per_relation:
        return
    for key, v in model.items():
        if not key.startswith("vsr/"):
            continue
        sw = v["swap"]
        bsw = base[key]["swap"] if base is not None else {}
        t = Table(title=f"VSR {Path(key[4:]).stem}: swap accuracy by meta-category and relation (%)")
        t.add_column("group")
        t.add_column("n", justify="right")
        if base is not None:
            t.add_column("untuned", justify="right")
        t.add_column("model", justify="right")
        for table_name in ("per_category", "per_relation"):
            for g, row in sorted(sw.get(table_name, {}).items()):
                cells = [f"{100 * row['accuracy']:.1f}"]
                if base is not None:
                    b = bsw.get(table_name, {}).get(g)
                    cells.insert(0, f"{100 * b['accuracy']:.1f}" if b else "-")
                t.add_row(g, str(row["n"]), *cells)
        console.print(t)
        if sw.get("n_skipped"):
            console.print(f"{sw['n_skipped']} rows skipped (no opposite relation): {', '.join(sw['skipped_relations'])}")


def evaluate(cfg: EvalSettings) -> dict[str, Any]:
    """Score ``cfg.model`` (and ``cfg.base``) on every held-out set; returns the metrics."""
    images = ImageCache()
    clip = load_clip(cfg.model, device=cfg.device, precision=cfg.precision, pretrained=cfg.pretrained or None,
                     batch_size=cfg.batch_size, backend=cfg.backend)  # fmt: skip
    doc: dict[str, Any] = {"model": {"spec": cfg.model, "pretrained": cfg.pretrained, **_metrics(cfg, clip, images)}}
    base = None
    if cfg.base:
        del clip
        bclip = load_clip(cfg.base, device=cfg.device, precision=cfg.precision, pretrained=cfg.base_pretrained,
                          batch_size=cfg.batch_size, backend=cfg.backend)  # fmt: skip
        base = _metrics(cfg, bclip, images)
        doc["base"] = {"spec": cfg.base, "pretrained": cfg.base_pretrained, **base}
    doc["vsr_human_accuracy"] = HUMAN_ACCURACY / 100.0
    atomic_write_json(Path(cfg.out) / "metrics.json", doc)
    model_metrics = {k: v for k, v in doc["model"].items() if k not in ("spec", "pretrained")}
    _print(model_metrics, base, cfg.per_relation)
    print(f"metrics: {os.fspath(Path(cfg.out) / 'metrics.json')}")
    return doc
