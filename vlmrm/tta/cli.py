"""``python -m vlmrm.tta key=value …`` — RLCF test-time adaptation from the command line.

Examples::

    python -m vlmrm.tta task=classify data=/data/imagenet-a mode=prompt
    python -m vlmrm.tta task=classify data=/data/imagenet-r mode=image policy=ViT-B-16/openai reward=ViT-L-14/openai
    python -m vlmrm.tta task=retrieve data=/data/flickr30k/dataset_flickr30k.json images=/data/flickr30k/images direction=i2t

Per-sample results go to ``<out>/results.jsonl`` as they finish; running the same command
again skips the samples already there (resume). At the end the file is rewritten in run
order (sample index order; the seeded permutation with ``shuffle=true``), followed by any
records of earlier runs outside this run's selection. Zero-shot and adapted metrics are
printed side by side at the end and written to ``<out>/metrics.json``.

On several GPUs or machines, launch it with torchrun (the same arguments)::

    torchrun --standalone --nproc-per-node=4 -m vlmrm.tta task=classify data=/data/imagenet-a

Every rank loads the policy and reward models on its own device (``cuda:<local rank>``;
the CPU and gloo without GPUs) and adapts every N-th pending sample, appending its results
to ``<out>/results.rank<r>.jsonl``; rank 0 merges them into ``results.jsonl`` (the same
records and order as a one-process run: per-sample seeds depend on the sample, not the
rank) and alone writes the metrics. A resumed run, with any number of processes, first
merges the rank files left by an interruption. Retrieval embeds the gallery once, split
over the ranks by batches; rank 0 caches it in ``<out>/gallery.pt`` and sends it to the
others on a resume.

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
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from vlmrm.errors import ConfigError, WeightsNotFoundError

TASKS = ("classify", "retrieve")
_RESULTS = "results.jsonl"
_PARTS = "results.rank*.jsonl"  # per-rank results under torchrun, merged by rank 0
_CONFIG = "config.json"
_METRICS = "metrics.json"
_COORD_TIMEOUT = timedelta(days=7)


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


def _load_models(cfg: TTAConfig, info=None):
    from vlmrm.distributed import DistInfo, rank_device
    from vlmrm.models import resolve_device
    from vlmrm.tta.feedback import CLIPFeedback

    device = resolve_device(rank_device(cfg.device, info or DistInfo()))
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


def _read_lines(path: Path) -> list[tuple[str, dict]]:
    """``(line, record)`` of every complete record of a results file."""
    good = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by an interruption: that sample is redone
        if isinstance(rec, dict) and "key" in rec:
            good.append((line, rec))
    return good


def _replace_results(out: Path, lines: list[str]) -> None:
    """Write ``results.jsonl`` atomically, then drop the per-rank files merged into it."""
    tmp = out / (_RESULTS + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(f"{ln}\n" for ln in lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / _RESULTS)
    for part in out.glob(_PARTS):
        part.unlink(missing_ok=True)


def _prepare_out(out: Path, current: dict[str, Any], resume: bool) -> dict[str, dict]:
    """Create ``out``; return the finished records (by key) when resuming.

    Finished records are those of ``results.jsonl`` and of the per-rank files an
    interrupted torchrun run left behind, which are merged into ``results.jsonl`` here.
    """
    out.mkdir(parents=True, exist_ok=True)
    results, config = out / _RESULTS, out / _CONFIG
    parts = sorted(out.glob(_PARTS))
    current = json.loads(json.dumps(current, default=str))  # as it reads back from the file
    done: dict[str, dict] = {}
    if resume and (results.is_file() or parts):
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
        for path in [results, *parts] if results.is_file() else parts:
            for line, rec in _read_lines(path):
                key = str(rec["key"])
                if key not in done:  # a record merged just before an interruption may repeat
                    done[key] = rec
                    good.append(line)
        _replace_results(out, good)
    else:
        results.unlink(missing_ok=True)
        for part in parts:
            part.unlink(missing_ok=True)
    config.write_text(json.dumps(current, indent=2, default=str))
    return done


def _live_path(out: Path, info) -> Path:
    """Where this process appends its finished records."""
    return out / (f"results.rank{info.rank}.jsonl" if info.enabled else _RESULTS)


def _finish(out: Path, info, done: dict[str, dict], new: list, keys: list[str]):
    """Gather every rank's new ``(record, seconds)`` on rank 0 and rewrite ``results.jsonl``.

    Returns (this run's records in run order, seconds per sample this session) on rank 0,
    ``(None, None)`` elsewhere. The file lists this run's records in run order, then the
    records of earlier runs outside this run's selection.
    """
    gathered = list(new)
    if info.enabled:
        import torch.distributed as dist

        parts: list | None = [None] * info.world_size if info.is_main else None
        dist.gather_object(list(new), parts, dst=0, group=_coord())
        if not info.is_main:
            return None, None
        gathered = [x for part in parts for x in part]  # ordered by key below
    by_key = dict(done)
    for rec, _ in gathered:
        by_key[str(rec["key"])] = rec
    kept = [by_key[k] for k in keys if k in by_key]
    chosen = set(keys)
    extra = [r for k, r in by_key.items() if k not in chosen]
    _replace_results(out, [json.dumps(r) for r in [*kept, *extra]])
    return kept, [dt for _, dt in gathered]


_COORD: dict[str, Any] = {}  # the bookkeeping group of the current process group


def _dist_info():
    """The job's :class:`~vlmrm.distributed.DistInfo`: rank 0 of 1 unless a process group is up.

    Under torchrun (a collective call) it also sets up the group :func:`_coord` returns.
    """
    import torch.distributed as dist

    from vlmrm.distributed import DistInfo, init_distributed

    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    info = init_distributed()
    if info.enabled and _COORD.get("world") is not dist.group.WORLD:
        _COORD["world"] = dist.group.WORLD
        _COORD["group"] = dist.new_group(backend="gloo", timeout=_COORD_TIMEOUT)
    return info


def _coord():
    """A gloo group with a long timeout for the results bookkeeping.

    Ranks wait in it for each other: the first to finish its shard waits for the last one,
    possibly for a long time on uneven hardware, and NCCL aborts a collective after 10
    minutes (gloo after 30). Results are small, so gloo on the CPU costs nothing.
    """
    return _COORD["group"]


class _AgreedError(ConfigError):
    """A problem every rank knows about (rank 0 alone reports it)."""


def _raise_agreed(problems: list[str | None]) -> None:
    found = [(r, p) for r, p in enumerate(problems) if p is not None]
    if not found:
        return
    if len({p for _, p in found}) == 1:
        raise _AgreedError(found[0][1])
    raise _AgreedError("; ".join(f"rank {r}: {p}" for r, p in found))


def _together(fn, info):
    """Run ``fn`` on every rank; a configuration problem on any rank is raised on all of them.

    (So no rank waits forever in a later collective for one that gave up.)
    """
    if not info.enabled:
        return fn()
    import torch.distributed as dist

    result, problem = None, None
    try:
        result = fn()
    except (ConfigError, WeightsNotFoundError) as exc:
        problem = _one_line(exc)
    problems: list[str | None] = [None] * info.world_size
    dist.all_gather_object(problems, problem, group=_coord())
    _raise_agreed(problems)
    return result


def _from_main(fn, info):
    """Run ``fn`` on rank 0 only and hand its result (or its configuration problem) to every rank."""
    if not info.enabled:
        return fn()
    import torch.distributed as dist

    payload: list[Any] = [None, None]
    if info.is_main:
        try:
            payload = [None, fn()]
        except (ConfigError, WeightsNotFoundError) as exc:
            payload = [_one_line(exc), None]
    dist.broadcast_object_list(payload, src=0, group=_coord())
    _raise_agreed([payload[0]])
    return payload[1]


def _start(
    out: Path, method: dict[str, Any], resume: bool, info
) -> tuple[dict[str, dict], set[str]]:
    """Rank 0 prepares ``out``; returns (finished records on rank 0, finished keys on all ranks)."""
    held: dict[str, dict] = {}

    def prepare() -> list[str]:
        held.update(_prepare_out(out, method, resume))
        return list(held)

    keys = _from_main(prepare, info)
    if info.enabled and not info.is_main:
        # Rank 0 has merged the rank files it can see. One still here is on a filesystem rank 0
        # does not share (another node): its samples were not counted and will be redone.
        out.mkdir(parents=True, exist_ok=True)
        _live_path(out, info).unlink(missing_ok=True)
    return held, set(keys)


def _bar_desc(desc: str, info) -> str:
    return f"[rank {info.rank}/{info.world_size}] {desc}" if info.enabled else desc


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


def _progress(cfg: TTAConfig, total: int, initial: int, desc: str, position: int = 0):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        disable=not cfg.progress,
        dynamic_ncols=True,
        position=position,
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


def _save_metrics(
    out: Path,
    metrics: dict[str, Any],
    settings,
    seconds: list[float],
    unit: str,
    title: str,
    rows: list[tuple[str, float, float]],
) -> dict[str, Any]:
    """``metrics`` plus the time per ``unit`` (of this session) and the settings: written to
    ``metrics.json``, printed as a table (``title``, ``rows``) and returned."""
    metrics = {
        **metrics,
        "seconds_per_sample": (sum(seconds) / len(seconds)) if seconds else None,
        "settings": asdict(settings),
    }
    (out / _METRICS).write_text(json.dumps(metrics, indent=2))
    speed = (
        f"{metrics['seconds_per_sample']:.3f} s/{unit} this session" if seconds else "all resumed"
    )
    _print_table(title, rows, f"{speed}; results: {os.fspath(out / _RESULTS)}")
    return metrics


def run_classify(cfg: TTAConfig) -> dict[str, Any]:
    """Adapt to every test image of a class-folder dataset; returns the metrics.

    Under torchrun (a process group is up) every rank adapts its shard of the pending
    images and gets the metrics back; rank 0 alone writes the results and prints.
    """
    from vlmrm.distributed import shard
    from vlmrm.tta.classify import ClassificationTTA, ClassifySettings
    from vlmrm.tta.data import load_class_folders, load_image
    from vlmrm.tta.rlcf import seed_for

    info = _dist_info()

    def setup():
        settings = ClassifySettings(
            mode=cfg.mode, steps=3 if cfg.steps is None else cfg.steps, lr=cfg.lr,
            weight_decay=cfg.weight_decay, k=3 if cfg.k is None else cfg.k, views=cfg.views,
            select=cfg.select, augmix=cfg.augmix, sampling=cfg.sampling, advantage=cfg.advantage,
            n_ctx=cfg.n_ctx, ctx_init=cfg.ctx_init, template=cfg.template,
            image_params=cfg.params, amp=cfg.amp, ema=cfg.ema, ema_momentum=cfg.ema_momentum,
            ema_every=cfg.ema_every, ema_weight=cfg.ema_weight,
        ).validated()  # fmt: skip
        return settings, load_class_folders(cfg.data, cfg.classnames)

    settings, data = _together(setup, info)
    out = _out_dir(cfg)
    done, done_keys = _start(out, _method(cfg, settings), cfg.resume, info)
    order = _order(len(data), cfg)
    keys = [data.samples[i][0] for i in order]
    pending = [i for i, key in zip(order, keys, strict=True) if key not in done_keys]
    mine = shard(pending, info)
    if info.is_main:
        procs = f" on {info.world_size} processes" if info.enabled else ""
        print(
            f"RLCF classify: {len(data)} images, {len(data.classnames)} classes (names: {data.names_source}); "
            f"{len(order) - len(pending)} done, {len(pending)} to go{procs} → {os.fspath(out / _RESULTS)}",
            file=sys.stderr,
        )
        if data.empty:
            print(
                f"note: {len(data.empty)} class folder(s) have no images, e.g. {data.empty[0]!r}",
                file=sys.stderr,
            )
        if cfg.ema and (done or info.enabled):
            why = "on resume" if done else "on every rank (a one-process run differs)"
            print(
                f"note: ema=true — the moving average starts from the policy {why}",
                file=sys.stderr,
            )

    def load():
        if not mine:
            return None
        policy, feedback = _load_models(cfg, info)
        return ClassificationTTA(policy, feedback, data.classnames, settings)

    tta = _together(load, info) if pending else None
    new: list[tuple[dict, float]] = []  # (record, seconds) adapted by this process
    if mine:
        if info.enabled:
            bar = _progress(cfg, len(mine), 0, _bar_desc("RLCF", info), info.local_rank)
            seen = []
        else:
            seen = [done[k] for k in keys if k in done]
            bar = _progress(cfg, len(order), len(seen), "RLCF")
        hits = [sum(r["zeroshot_correct"] for r in seen), sum(r["correct"] for r in seen)]
        n = len(seen)
        live = _live_path(out, info)
        batch = int(cfg.batch)
        images = _prefetch(lambda i: load_image(data.path(i)), mine)
        try:
            for start in range(0, len(mine), batch):
                idx = mine[start : start + batch]
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
                    new.append((rec, dt))
                _append(live, records)
                n += len(records)
                bar.update(len(idx))
                bar.set_postfix_str(
                    f"zero-shot {100 * hits[0] / n:.1f}% · RLCF {100 * hits[1] / n:.1f}%"
                )
        finally:
            bar.close()
    kept, seconds = _finish(out, info, done, new, keys)
    return _from_main(lambda: _classify_metrics(cfg, out, settings, kept, seconds), info)


def _classify_metrics(cfg: TTAConfig, out: Path, settings, kept: list[dict], seconds: list[float]):
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
    title = f"RLCF classification ({cfg.mode}) — {n} images"
    return _save_metrics(out, metrics, settings, seconds, "image", title, rows)


def _gallery(cfg: TTAConfig, out: Path, policy, feedback, data, info):
    """Embed the gallery once; cached in ``out`` so a resumed run skips it.

    Under torchrun every rank embeds its share of the batches and all exchange them
    (:func:`build_gallery`); rank 0 alone writes and reads the cache and sends a cached
    gallery to the others, so the nodes need not share a filesystem for it.
    """
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

    def cached() -> Gallery | None:
        if not cache.is_file():
            return None
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
        return None

    g = _from_main(cached, info)
    if g is not None:
        return g
    from tqdm.auto import tqdm

    def progress(it):
        return tqdm(
            it,
            desc=_bar_desc("embedding gallery", info),
            disable=not cfg.progress,
            dynamic_ncols=True,
            position=info.local_rank,
        )

    g = build_gallery(
        policy, feedback, data.image_paths, data.captions, load=load_image, progress=progress,
        info=info,
    )  # fmt: skip
    if info.is_main:
        tmp = out / "gallery.pt.tmp"
        torch.save(
            {"key": key, "policy_image": g.policy_image.cpu(), "policy_text": g.policy_text.cpu(),
             "reward_image": [e.cpu() for e in g.reward_image], "reward_text": [e.cpu() for e in g.reward_text]},
            tmp,
        )  # fmt: skip
        os.replace(tmp, cache)
    return g


def run_retrieve(cfg: TTAConfig) -> dict[str, Any]:
    """Adapt to every query of a caption dataset; returns Recall@1/5/10 before and after.

    Under torchrun every rank adapts its shard of the pending queries against the same
    gallery and gets the metrics back; rank 0 alone writes the results and prints.
    """
    from vlmrm.distributed import shard
    from vlmrm.tta.data import load_image, load_retrieval
    from vlmrm.tta.retrieve import (
        RetrievalTTA,
        RetrieveSettings,
        best_rank,
        normalize_direction,
    )

    info = _dist_info()

    def setup():
        direction = normalize_direction(cfg.direction)
        settings = RetrieveSettings(
            direction=direction, steps=8 if cfg.steps is None else cfg.steps,
            lr=1e-6 if cfg.lr is None else cfg.lr, weight_decay=cfg.weight_decay, k=cfg.k,
            sampling=cfg.sampling, advantage=cfg.advantage, params=cfg.params, amp=cfg.amp,
            ema=cfg.ema, ema_momentum=cfg.ema_momentum, ema_every=cfg.ema_every,
            ema_weight=cfg.ema_weight,
        ).validated()  # fmt: skip
        return direction, settings, load_retrieval(cfg.data, cfg.images, cfg.split)

    direction, settings, data = _together(setup, info)
    cfg.direction = direction
    out = _out_dir(cfg)
    done, done_keys = _start(out, _method(cfg, settings), cfg.resume, info)
    n_queries = len(data.image_paths) if direction == "i2t" else len(data.captions)
    order = _order(n_queries, cfg)
    keys = [str(q) for q in order]
    pending = [q for q in order if str(q) not in done_keys]
    mine = shard(pending, info)
    if info.is_main:
        procs = f" on {info.world_size} processes" if info.enabled else ""
        print(
            f"RLCF retrieve ({direction}): {len(data.image_paths)} images, {len(data.captions)} captions "
            f"({data.source}); {len(order) - len(pending)} done, {len(pending)} to go{procs} → "
            f"{os.fspath(out / _RESULTS)}",
            file=sys.stderr,
        )
        if pending and cfg.batch != 1:
            print("note: retrieval adapts one query at a time; batch is ignored", file=sys.stderr)
        if cfg.ema and info.enabled:
            print(
                "note: ema=true — every rank keeps its own moving average (a one-process run differs)",
                file=sys.stderr,
            )
    new: list[tuple[dict, float]] = []  # (record, seconds) adapted by this process
    if pending:  # every rank takes part in the gallery, even with an empty shard
        policy, feedback = _together(lambda: _load_models(cfg, info), info)
        gallery = _gallery(cfg, out, policy, feedback, data, info)
        tta = _together(lambda: RetrievalTTA(policy, feedback, gallery, settings), info)
    if mine:
        if info.enabled:
            bar = _progress(
                cfg, len(mine), 0, _bar_desc(f"RLCF {direction}", info), info.local_rank
            )
            seen = []
        else:
            seen = [done[k] for k in keys if k in done]
            bar = _progress(cfg, len(order), len(seen), f"RLCF {direction}")
        hits = [sum(r["zeroshot_rank"] == 0 for r in seen), sum(r["rank"] == 0 for r in seen)]
        n = len(seen)
        live = _live_path(out, info)
        queries = (
            _prefetch(lambda q: load_image(data.image_paths[q]), mine)
            if direction == "i2t"
            else None
        )
        try:
            for q in mine:
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
                _append(live, [rec])
                new.append((rec, dt))
                n += 1
                hits[0] += rec["zeroshot_rank"] == 0
                hits[1] += rec["rank"] == 0
                bar.update(1)
                bar.set_postfix_str(
                    f"R@1 zero-shot {100 * hits[0] / n:.1f}% · RLCF {100 * hits[1] / n:.1f}%"
                )
        finally:
            bar.close()
    kept, seconds = _finish(out, info, done, new, keys)
    return _from_main(lambda: _retrieve_metrics(out, direction, settings, kept, seconds), info)


def _retrieve_metrics(out: Path, direction: str, settings, kept: list[dict], seconds: list[float]):
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
    title = f"RLCF retrieval ({'image→text' if direction == 'i2t' else 'text→image'}) — {len(kept)} queries"
    rows = [(f"{k} %", zs[k], ad[k]) for k in ad]
    return _save_metrics(out, metrics, settings, seconds, "query", title, rows)


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
    from vlmrm.distributed import distributed_session

    # Under torchrun every rank runs this; problems all ranks share are reported by rank 0 only.
    rank = int(os.environ.get("RANK", "0") or 0)
    cfg = None
    try:
        cfg = parse_config(argv)
        with distributed_session():  # joins torchrun's process group; always leaves it
            run(cfg)
        return 0
    except (ConfigError, WeightsNotFoundError) as exc:
        shared = isinstance(exc, _AgreedError) or cfg is None
        if rank == 0 or not shared:
            prefix = f"[rank {rank}] " if rank and not shared else ""
            print(f"{prefix}error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if rank == 0:
            where = f" in {os.fspath(_out_dir(cfg))}" if cfg is not None and cfg.data else ""
            print(
                f"\ninterrupted; finished samples are saved{where} — run the same command to resume",
                file=sys.stderr,
            )
        return 130
