"""``python -m vlmrm.tta key=value …`` — RLCF test-time adaptation from the command line.

Examples::

    python -m vlmrm.tta task=classify data=/data/imagenet-a mode=prompt
    python -m vlmrm.tta task=classify data=/data/imagenet-r mode=image policy=ViT-B-16/openai reward=ViT-L-14/openai
    python -m vlmrm.tta task=retrieve data=/data/flickr30k/dataset_flickr30k.json images=/data/flickr30k/images direction=i2t

Per-sample results go to ``<out>/results.jsonl`` as they finish; running the same command
again skips the samples already there (resume). Zero-shot and adapted metrics are printed
side by side at the end and written to ``<out>/metrics.json``.

A model is ``ARCH/TAG`` (open_clip pretrained), ``ARCH@/path/to/weights`` (a local file),
or ``vlmrm-tiny`` (small random CLIP for smoke tests). ``reward=[A,B] reward_weights=[5,3]``
uses several reward models.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from vlmrm.errors import ConfigError, WeightsNotFoundError

TASKS = ("classify", "retrieve")
_RESULTS = "results.jsonl"
_CONFIG = "config.json"
_METRICS = "metrics.json"


@dataclass
class TTAConfig:
    """Command-line settings (``key=value``); ``None`` means the task's reference default."""

    task: str = "classify"  # classify | retrieve
    data: str | None = None  # class-folder root (classify) or caption JSON (retrieve)
    images: str | None = None  # retrieval image folder (default: the JSON's folder)
    split: str = "test"  # Karpathy split for retrieval
    classnames: str | None = None  # class-names file, or "imagenet"; default: automatic
    policy: str = "ViT-B-16/openai"
    reward: Any = "ViT-L-14/openai"  # one spec or a list [A, B]
    reward_weights: list[float] | None = None
    mode: str = "prompt"  # classify: prompt | image
    direction: str = "i2t"  # retrieve: i2t | t2i
    steps: int | None = None  # 3 classify / 8 retrieve
    lr: float | None = None  # 7e-3 prompt / 1e-5 image / 1e-6 retrieve
    weight_decay: float = 5e-4
    k: int | None = None  # 3 classify / 16 i2t / 12 t2i
    views: int = 64
    select: float = 0.1
    augmix: bool = False
    sampling: str = "topk"  # topk | sample
    advantage: str = "mean"  # mean | std
    n_ctx: int = 4
    ctx_init: str = "a photo of a"
    template: str = "a photo of a {}."
    params: str = "all"  # adapted tower weights: all | norm
    reward_scale: float = 2.5
    ema: bool = False
    ema_momentum: float = 0.9998
    ema_every: int = 64
    ema_weight: float = 1.0
    batch: int = 1  # classify: test images adapted at once (independent weights)
    limit: int | None = None
    shuffle: bool = False
    seed: int = 0
    device: str | None = None
    amp: bool = True
    out: str | None = None
    resume: bool = True
    progress: bool = True


def _one_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def parse_config(argv: Sequence[str]) -> TTAConfig:
    """``key=value`` strings → :class:`TTAConfig`; any problem is one :class:`ConfigError` line."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    known = [f.name for f in fields(TTAConfig)]
    for a in argv:
        key, eq, _ = a.partition("=")
        if not eq or not key:
            raise ConfigError(
                f"expected key=value arguments, got {a!r} (e.g. task=classify data=/path)"
            )
        key = key.lstrip("+")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = (
                f"; did you mean {' / '.join(close)}?"
                if close
                else f"; known keys: {', '.join(known)}"
            )
            raise ConfigError(f"unknown key {key!r}{hint}")
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(TTAConfig), OmegaConf.from_dotlist([a.lstrip("+") for a in argv])
        )
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad setting: {_one_line(exc)}") from exc
    if cfg.task not in TASKS:
        raise ConfigError(f"unknown task {cfg.task!r}; choose one of {TASKS}")
    if not cfg.data:
        what = "a class-folder root" if cfg.task == "classify" else "a caption annotation JSON"
        raise ConfigError(f"data=<path> is required ({what} for task={cfg.task})")
    if int(cfg.batch) < 1:
        raise ConfigError(f"batch must be >= 1, got {cfg.batch}")
    if cfg.limit is not None and int(cfg.limit) < 1:
        raise ConfigError(f"limit must be >= 1, got {cfg.limit}")
    return cfg


def reward_specs(reward: Any) -> list[str]:
    """``"A"``, ``"A,B"`` or ``["A", "B"]`` → list of model specs."""
    if isinstance(reward, str):
        specs = [s.strip() for s in reward.split(",")]
    elif isinstance(reward, (list, tuple)):
        specs = [str(s).strip() for s in reward]
    else:
        raise ConfigError(f"reward must be a model spec or a list of them, got {reward!r}")
    if not specs or not all(specs):
        raise ConfigError(f"reward must name at least one model, got {reward!r}")
    return specs


def load_model(spec: str, device, precision: str):
    """``ARCH/TAG``, ``ARCH`` or ``ARCH@weights-file`` through :func:`vlmrm.load_clip`."""
    from vlmrm.models import load_clip

    arch, at, path = spec.partition("@")
    return load_clip(
        arch if at else spec,
        device=device,
        precision=precision,
        pretrained=path if at else None,
        resize_mode="center_crop",  # CLIP's own evaluation transform
    )


def _load_models(cfg: TTAConfig):
    from vlmrm.models import resolve_device
    from vlmrm.tta.feedback import CLIPFeedback

    device = resolve_device(cfg.device)
    policy_precision = "amp" if (device.type == "cuda" and cfg.amp) else "fp32"
    policy = load_model(cfg.policy, device, policy_precision)
    models = []
    for spec in reward_specs(cfg.reward):
        # The policy is never modified (adapted weights are copies), so it can double as a reward model.
        models.append(policy if spec == cfg.policy else load_model(spec, device, "auto"))
    feedback = CLIPFeedback(models, cfg.reward_weights, scale=cfg.reward_scale)
    return policy, feedback


def _out_dir(cfg: TTAConfig) -> Path:
    if cfg.out:
        return Path(cfg.out).expanduser()
    name = Path(str(cfg.data).rstrip("/")).stem or "data"
    what = cfg.mode if cfg.task == "classify" else cfg.direction
    return Path("runs") / "tta" / f"{cfg.task}-{what}-{name}"


def _abspath(path: str | None) -> str | None:
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _method(cfg: TTAConfig, settings) -> dict[str, Any]:
    """Everything that changes per-sample results (resuming with other values is refused)."""
    names = cfg.classnames
    method = {
        "task": cfg.task,
        "data": _abspath(cfg.data),
        "images": _abspath(cfg.images),
        "split": cfg.split if cfg.task == "retrieve" else None,
        "classnames": names if names in (None, "imagenet") else _abspath(names),
        "policy": cfg.policy,
        "reward": reward_specs(cfg.reward),
        "reward_weights": cfg.reward_weights,
        "reward_scale": cfg.reward_scale,
        "seed": cfg.seed,
    }
    method.update({k: v for k, v in asdict(settings).items() if k != "amp"})
    return method


def _prepare_out(out: Path, current: dict[str, Any], resume: bool) -> dict[str, dict]:
    """Create ``out``; return the finished records (by key) when resuming."""
    out.mkdir(parents=True, exist_ok=True)
    results, config = out / _RESULTS, out / _CONFIG
    current = json.loads(json.dumps(current, default=str))  # as it reads back from the file
    done: dict[str, dict] = {}
    if resume and results.is_file():
        if config.is_file():
            try:
                previous = json.loads(config.read_text())
            except json.JSONDecodeError:
                previous = {}
            diff = [k for k in current if k in previous and previous[k] != current[k]]
            if diff:
                k = diff[0]
                raise ConfigError(
                    f"{os.fspath(out)!r} holds results of a different run ({k}={previous[k]!r}, now "
                    f"{current[k]!r}); use another out=<dir>, or resume=false to overwrite"
                )
        good = []
        for line in results.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption: that sample is redone
            if isinstance(rec, dict) and "key" in rec:
                done[str(rec["key"])] = rec
                good.append(line)
        results.write_text("".join(f"{ln}\n" for ln in good), encoding="utf-8")
    elif results.is_file():
        results.unlink()
    config.write_text(json.dumps(current, indent=2, default=str))
    return done


def _prefetch(loader, items: Sequence, lookahead: int = 8) -> Iterator:
    """Decode upcoming images in a background thread while the current one adapts."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(loader, it) for it in items[:lookahead]]
        for i in range(len(items)):
            if i + lookahead < len(items):
                futures.append(pool.submit(loader, items[i + lookahead]))
            yield futures[i].result()
            futures[i] = None


def _order(n: int, cfg: TTAConfig) -> list[int]:
    order = list(range(n))
    if cfg.shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(cfg.seed))).tolist()
    if cfg.limit is not None:
        order = order[: int(cfg.limit)]
    return order


def _progress(cfg: TTAConfig, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, disable=not cfg.progress, dynamic_ncols=True
    )


def _print_table(title: str, rows: list[tuple[str, float, float]], extra: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("zero-shot", justify="right")
    table.add_column("RLCF", justify="right")
    table.add_column("Δ", justify="right")
    for name, zs, ad in rows:
        table.add_row(name, f"{zs:.2f}", f"{ad:.2f}", f"{ad - zs:+.2f}")
    console = Console()
    console.print(table)
    if extra:
        console.print(extra)


def _append(path: Path, records: list[dict]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_classify(cfg: TTAConfig) -> dict[str, Any]:
    """Adapt to every test image of a class-folder dataset; returns the metrics."""
    from vlmrm.tta.classify import ClassificationTTA, ClassifySettings
    from vlmrm.tta.data import load_class_folders, load_image
    from vlmrm.tta.rlcf import seed_for

    settings = ClassifySettings(
        mode=cfg.mode, steps=3 if cfg.steps is None else cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
        k=3 if cfg.k is None else cfg.k, views=cfg.views, select=cfg.select, augmix=cfg.augmix,
        sampling=cfg.sampling, advantage=cfg.advantage, n_ctx=cfg.n_ctx, ctx_init=cfg.ctx_init,
        template=cfg.template, image_params=cfg.params, amp=cfg.amp, ema=cfg.ema,
        ema_momentum=cfg.ema_momentum, ema_every=cfg.ema_every, ema_weight=cfg.ema_weight,
    ).validated()  # fmt: skip
    data = load_class_folders(cfg.data, cfg.classnames)
    out = _out_dir(cfg)
    done = _prepare_out(out, _method(cfg, settings), cfg.resume)
    order = _order(len(data), cfg)
    keys = [data.samples[i][0] for i in order]
    pending = [i for i, key in zip(order, keys, strict=True) if key not in done]
    print(
        f"RLCF classify: {len(data)} images, {len(data.classnames)} classes (names: {data.names_source}); "
        f"{len(order) - len(pending)} done, {len(pending)} to go → {os.fspath(out / _RESULTS)}",
        file=sys.stderr,
    )
    if data.empty:
        print(
            f"note: {len(data.empty)} class folder(s) have no images, e.g. {data.empty[0]!r}",
            file=sys.stderr,
        )
    if cfg.ema and done:
        print(
            "note: ema=true — the moving average restarts from the policy on resume",
            file=sys.stderr,
        )
    kept = [done[k] for k in keys if k in done]
    seconds: list[float] = []
    if pending:
        policy, feedback = _load_models(cfg)
        tta = ClassificationTTA(policy, feedback, data.classnames, settings)
        bar = _progress(cfg, len(order), len(kept), "RLCF")
        hits = [sum(r["zeroshot_correct"] for r in kept), sum(r["correct"] for r in kept)]
        batch = int(cfg.batch)
        images = _prefetch(lambda i: load_image(data.path(i)), pending)
        try:
            for start in range(0, len(pending), batch):
                idx = pending[start : start + batch]
                imgs = [next(images) for _ in idx]
                t0 = time.perf_counter()
                results = tta.adapt_batch(imgs, [seed_for(cfg.seed, i) for i in idx])
                dt = (time.perf_counter() - t0) / len(idx)
                records = []
                for i, res in zip(idx, results, strict=True):
                    rel, label = data.samples[i]
                    rec = {
                        "key": rel, "index": i, "label": label, "class": data.classnames[label],
                        "zeroshot_pred": res.zeroshot_pred, "pred": res.pred,
                        "zeroshot_correct": res.zeroshot_pred == label, "correct": res.pred == label,
                        "zeroshot_top5": res.topk(5, zeroshot=True), "top5": res.topk(5),
                        "rewards": [round(r, 5) for r in res.rewards], "seconds": round(dt, 4),
                    }  # fmt: skip
                    records.append(rec)
                    hits[0] += rec["zeroshot_correct"]
                    hits[1] += rec["correct"]
                    seconds.append(dt)
                _append(out / _RESULTS, records)
                kept.extend(records)
                bar.update(len(idx))
                n = len(kept)
                bar.set_postfix_str(
                    f"zero-shot {100 * hits[0] / n:.1f}% · RLCF {100 * hits[1] / n:.1f}%"
                )
        finally:
            bar.close()
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
        "seconds_per_sample": (sum(seconds) / len(seconds)) if seconds else None,
        "settings": asdict(settings),
    }
    (out / _METRICS).write_text(json.dumps(metrics, indent=2))
    speed = (
        f"{metrics['seconds_per_sample']:.3f} s/image this session" if seconds else "all resumed"
    )
    _print_table(
        f"RLCF classification ({cfg.mode}) — {n} images",
        [
            ("top-1 %", metrics["zeroshot_top1"], metrics["top1"]),
            ("top-5 %", metrics["zeroshot_top5"], metrics["top5"]),
        ],
        f"{speed}; results: {os.fspath(out / _RESULTS)}",
    )
    return metrics


def _gallery(cfg: TTAConfig, out: Path, policy, feedback, data):
    """Embed the gallery once; cached in ``out`` so a resumed run skips it."""
    from vlmrm.tta.data import load_image
    from vlmrm.tta.retrieve import Gallery, build_gallery

    key = {
        "policy": policy.name,
        "reward": feedback.names,
        "images": len(data.image_paths),
        "captions": len(data.captions),
        "data": _abspath(cfg.data),
        "split": cfg.split,
    }
    cache = out / "gallery.pt"
    if cache.is_file():
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                return Gallery(
                    saved["policy_image"],
                    saved["policy_text"],
                    saved["reward_image"],
                    saved["reward_text"],
                )
        except Exception:  # noqa: BLE001 - a broken cache is simply rebuilt
            pass
    from tqdm.auto import tqdm

    def progress(it):
        return tqdm(it, desc="embedding gallery", disable=not cfg.progress, dynamic_ncols=True)

    g = build_gallery(
        policy, feedback, data.image_paths, data.captions, load=load_image, progress=progress
    )
    torch.save(
        {"key": key, "policy_image": g.policy_image.cpu(), "policy_text": g.policy_text.cpu(),
         "reward_image": [e.cpu() for e in g.reward_image], "reward_text": [e.cpu() for e in g.reward_text]},
        cache,
    )  # fmt: skip
    return g


def run_retrieve(cfg: TTAConfig) -> dict[str, Any]:
    """Adapt to every query of a caption dataset; returns Recall@1/5/10 before and after."""
    from vlmrm.tta.data import load_image, load_retrieval
    from vlmrm.tta.retrieve import (
        RetrievalTTA,
        RetrieveSettings,
        best_rank,
        normalize_direction,
        recall_at,
    )

    direction = normalize_direction(cfg.direction)
    cfg.direction = direction
    settings = RetrieveSettings(
        direction=direction, steps=8 if cfg.steps is None else cfg.steps, lr=1e-6 if cfg.lr is None else cfg.lr,
        weight_decay=cfg.weight_decay, k=cfg.k, sampling=cfg.sampling, advantage=cfg.advantage,
        params=cfg.params, amp=cfg.amp, ema=cfg.ema, ema_momentum=cfg.ema_momentum,
        ema_every=cfg.ema_every, ema_weight=cfg.ema_weight,
    ).validated()  # fmt: skip
    data = load_retrieval(cfg.data, cfg.images, cfg.split)
    out = _out_dir(cfg)
    done = _prepare_out(out, _method(cfg, settings), cfg.resume)
    n_queries = len(data.image_paths) if direction == "i2t" else len(data.captions)
    order = _order(n_queries, cfg)
    pending = [q for q in order if str(q) not in done]
    print(
        f"RLCF retrieve ({direction}): {len(data.image_paths)} images, {len(data.captions)} captions "
        f"({data.source}); {len(order) - len(pending)} done, {len(pending)} to go → {os.fspath(out / _RESULTS)}",
        file=sys.stderr,
    )
    kept = [done[str(q)] for q in order if str(q) in done]
    seconds: list[float] = []
    if pending:
        if cfg.batch != 1:
            print("note: retrieval adapts one query at a time; batch is ignored", file=sys.stderr)
        policy, feedback = _load_models(cfg)
        gallery = _gallery(cfg, out, policy, feedback, data)
        tta = RetrievalTTA(policy, feedback, gallery, settings)
        bar = _progress(cfg, len(order), len(kept), f"RLCF {direction}")
        hits = [sum(r["zeroshot_rank"] == 0 for r in kept), sum(r["rank"] == 0 for r in kept)]
        queries = (
            _prefetch(lambda q: load_image(data.image_paths[q]), pending)
            if direction == "i2t"
            else None
        )
        try:
            for q in pending:
                t0 = time.perf_counter()
                if direction == "i2t":
                    res = tta.adapt_image(next(queries), q)
                    targets = data.img2txt[q]
                    query = os.fspath(data.image_paths[q])
                else:
                    res = tta.adapt_text(data.captions[q], q)
                    targets = [data.txt2img[q]]
                    query = data.captions[q]
                dt = time.perf_counter() - t0
                rec = {
                    "key": str(q), "index": q, "query": query, "targets": targets,
                    "zeroshot_rank": best_rank(res.zeroshot_scores, targets), "rank": best_rank(res.scores, targets),
                    "top10": res.scores.topk(min(10, res.scores.numel())).indices.tolist(),
                    "rewards": [round(r, 5) for r in res.rewards], "seconds": round(dt, 4),
                }  # fmt: skip
                _append(out / _RESULTS, [rec])
                kept.append(rec)
                seconds.append(dt)
                hits[0] += rec["zeroshot_rank"] == 0
                hits[1] += rec["rank"] == 0
                bar.update(1)
                n = len(kept)
                bar.set_postfix_str(
                    f"R@1 zero-shot {100 * hits[0] / n:.1f}% · RLCF {100 * hits[1] / n:.1f}%"
                )
        finally:
            bar.close()
    if not kept:
        raise ConfigError("no queries selected (check limit=)")
    zs = recall_at([r["zeroshot_rank"] for r in kept])
    ad = recall_at([r["rank"] for r in kept])
    metrics = {
        "n": len(kept),
        "direction": direction,
        **{f"zeroshot_{k}": v for k, v in zs.items()},
        **ad,
        "seconds_per_sample": (sum(seconds) / len(seconds)) if seconds else None,
        "settings": asdict(settings),
    }
    (out / _METRICS).write_text(json.dumps(metrics, indent=2))
    speed = (
        f"{metrics['seconds_per_sample']:.3f} s/query this session" if seconds else "all resumed"
    )
    _print_table(
        f"RLCF retrieval ({'image→text' if direction == 'i2t' else 'text→image'}) — {len(kept)} queries",
        [(f"{k} %", zs[k], ad[k]) for k in ad],
        f"{speed}; results: {os.fspath(out / _RESULTS)}",
    )
    return metrics


def run(cfg: TTAConfig) -> dict[str, Any]:
    """Run the configured task; returns its metrics."""
    return run_classify(cfg) if cfg.task == "classify" else run_retrieve(cfg)


_HELP = {
    "task": "classify | retrieve",
    "data": "class-folder root (classify) or caption annotation JSON (retrieve)",
    "images": "retrieval image folder (default: the JSON's folder)",
    "split": "Karpathy split to evaluate: test | val | train | all",
    "classnames": "class-names file, or 'imagenet' (default: classnames.txt, wnids, folder names)",
    "policy": "the CLIP that adapts",
    "reward": "reward CLIP, or a list [A,B]",
    "reward_weights": "one weight per reward model, e.g. [5,3]",
    "mode": "classify: adapt the prompt context (prompt) or the image tower (image)",
    "direction": "retrieve: i2t (adapts the image tower) | t2i (adapts the text tower)",
    "steps": "REINFORCE steps per sample (default 3 classify, 8 retrieve)",
    "lr": "AdamW learning rate (default 7e-3 prompt, 1e-5 image, 1e-6 retrieve)",
    "weight_decay": "AdamW weight decay",
    "k": "answers sampled per step (default 3 classify, 16 i2t, 12 t2i)",
    "views": "classify: augmented views per image (centre crop + random crops)",
    "select": "classify: fraction of lowest-entropy views kept",
    "augmix": "classify: AugMix on the random views",
    "sampling": "topk | sample (draw k answers from the policy's softmax)",
    "advantage": "mean (reward - mean over k) | std (also / std)",
    "n_ctx": "prompt mode: context tokens when ctx_init is empty",
    "ctx_init": "prompt mode: initial context words",
    "template": "class prompt for the reward model (and the image mode classifier)",
    "params": "adapted tower weights: all | norm (only normalisation layers)",
    "reward_scale": "reward = reward_scale * max(cos, 0)",
    "ema": "start each sample from a moving average of adapted weights (not episodic)",
    "ema_momentum": "EMA momentum",
    "ema_every": "move the start weights to the EMA every this many samples",
    "ema_weight": "start = (1 - w) * original + w * EMA",
    "batch": "classify: images adapted at once, each with independent weights",
    "limit": "only the first N samples",
    "shuffle": "random sample order (seeded)",
    "seed": "seed of the random views (per sample: the same alone, batched or resumed)",
    "device": "cpu | cuda | cuda:N (default: cuda when available)",
    "amp": "mixed precision (fp16 autocast + grad scaling) on CUDA",
    "out": "output folder (default runs/tta/<task>-<mode|direction>-<data>)",
    "resume": "skip samples already in <out>/results.jsonl (false: start over)",
    "progress": "show a progress bar",
}


def usage() -> str:
    lines = []
    for f in fields(TTAConfig):
        default = f"{f.name}={getattr(TTAConfig, f.name, None)!r}"
        lines.append(f"  {default:<34} {_HELP.get(f.name, '')}")
    return f"{__doc__.strip()}\n\nSettings (key=value), defaults:\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage())
        return 0
    cfg = None
    try:
        cfg = parse_config(argv)
        run(cfg)
        return 0
    except (ConfigError, WeightsNotFoundError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" in {os.fspath(_out_dir(cfg))}" if cfg is not None and cfg.data else ""
        print(
            f"\ninterrupted; finished samples are saved{where} — run the same command to resume",
            file=sys.stderr,
        )
        return 130
