"""Preference tuning of a CLIP reward model: DPO, IPO, hinge, Bradley–Terry, listwise,
contrastive fine-tuning and REINFORCE, with a frozen reference, checkpoints and resume.

The tuned weights are saved as ``<out>/model.safetensors``, a plain open_clip state
dict, so they drop into the reward core unchanged::

    clip = vlmrm.load_clip("ViT-B-32", pretrained="runs/tune/model.safetensors")

Design choices (and why):

* τ = ``exp(logit_scale)`` is frozen: scores stay on the reference's scale, so β keeps
  its meaning and no loss can be lowered by sharpening the temperature alone.
* The reference is the model as loaded. By default its scores for every training and
  evaluation item are computed once before training (``precompute_ref=true``) and kept
  in the checkpoint, so no second model sits in memory; ``precompute_ref=false`` keeps a
  frozen copy instead (reloaded from the same spec on resume).
* The model stays in ``eval()`` mode while training: CLIP has no dropout or batch norm
  in use, and the forward pass is then identical to the reward core's, so at step 0 the
  margin ``h`` is exactly 0 (DPO loss ``log 2``).
* A locked tower is frozen and its embeddings are cached, which removes its forward
  pass from every step after the first epoch.
* Data order is a seeded permutation per epoch and REINFORCE samples from a generator
  seeded by ``(seed, step)``, so a resumed run draws the same batches it would have.
* SIGINT/SIGTERM finish the current step, save a checkpoint and return; run the same
  command again to resume (a second Ctrl-C aborts at once).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel, load_clip
from vlmrm.tune import losses as L
from vlmrm.tune.data import (
    PAIR_MODES,
    PAIR_WEIGHTINGS,
    ImageCache,
    PreferencePair,
    RankedSet,
    VSRExample,
    load_image_captions,
    load_ranked_sets,
    load_vsr,
    ranking_to_pairs,
    split_sets,
)
from vlmrm.tune.evaluate import (
    Item,
    cosine_scores,
    evaluate_model,
    listwise_top1,
    pairwise_accuracy,
    set_scores,
)

LOSSES = ("dpo", "ipo", "hinge", "bt", "listwise", "contrastive", "reinforce")
PAIRWISE = ("dpo", "ipo", "hinge", "bt")
LOCKS = ("none", "image", "text")
TRAIN_PARAMS = ("all", "attn_in_proj")
AMP_MODES = ("auto", "off", "bf16", "fp16")
RESUME_MODES = ("auto", "true", "false")
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
# Settings that may change between a run and its resumption.
RESUMABLE_CHANGES = frozenset(
    {
        "steps", "log_every", "eval_every", "checkpoint_every", "tensorboard", "device", "resume",
        "quiet", "out", "vsr", "vsr_image_root", "probe", "probe_size",
    }
)


@dataclass
class TuneConfig:
    """Every setting of ``python -m vlmrm.tune`` (``key=value`` on the command line)."""

    loss: str = "dpo"  # dpo | ipo | hinge | bt | listwise | contrastive | reinforce
    data: str = ""  # JSONL of ranked sets and/or pairs (required)
    eval_data: str = ""  # held-out JSONL; default: eval_fraction of data (by group)
    eval_fraction: float = 0.2
    image_root: str = ""  # folder image paths are relative to (default: each file's folder)
    vsr: str = ""  # optional VSR jsonl evaluated before/after
    vsr_image_root: str = ""
    probe: str = ""  # optional {"image","caption"} jsonl; default: eval sets' best pairs
    probe_size: int = 64
    model: str = "ViT-B-32/openai"  # ARCH/TAG, ARCH (random), or vlmrm-tiny
    pretrained: str = ""  # local weights file for a bare ARCH
    device: str = "auto"
    out: str = "runs/tune"
    # objective
    beta: float = 0.1
    label_smoothing: float = 0.0
    pairs: str = "top"  # top | all | adjacent
    pair_weighting: str = "none"  # none | gap
    num_samples: int = 4  # REINFORCE samples per anchor
    reward: str = "correct"  # REINFORCE reward: correct | rank | confidence
    kl_coef: float = 0.0  # REINFORCE KL(π_θ ‖ π_ref) weight
    # what trains
    lock: str = "none"  # none | image | text
    train_params: str = "all"  # all | attn_in_proj
    precompute_ref: bool = True
    # optimisation
    steps: int = 1000  # 0: evaluate only
    batch_size: int = 32
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # 0: off
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    seed: int = 0
    # bookkeeping
    log_every: int = 10
    eval_every: int = 0  # 0: only before and after
    checkpoint_every: int = 200
    resume: str = "auto"  # auto | true | false
    tensorboard: bool = True
    quiet: bool = False


def validate_config(cfg: TuneConfig) -> TuneConfig:
    """Check every setting; each problem is one :class:`ConfigError` line."""

    def choice(name: str, options: Sequence[str]) -> None:
        v = getattr(cfg, name)
        if v not in options:
            raise ConfigError(f"{name}={v!r} is not one of {tuple(options)}")

    choice("loss", LOSSES)
    choice("pairs", PAIR_MODES)
    choice("pair_weighting", PAIR_WEIGHTINGS)
    choice("reward", L.REINFORCE_REWARDS)
    choice("lock", LOCKS)
    choice("train_params", TRAIN_PARAMS)
    choice("amp", AMP_MODES)
    cfg.resume = str(cfg.resume).lower()
    choice("resume", RESUME_MODES)
    if not cfg.data:
        raise ConfigError("data=... is required: a JSONL of ranked sets or preference pairs")
    if not cfg.beta > 0 or not math.isfinite(cfg.beta):
        raise ConfigError(f"beta must be a positive number, got {cfg.beta}")
    if not 0.0 <= cfg.label_smoothing <= 0.5:
        raise ConfigError(f"label_smoothing must lie in [0, 0.5], got {cfg.label_smoothing}")
    for name in ("steps", "warmup_steps", "log_every", "eval_every", "checkpoint_every"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.batch_size < 1 or (cfg.loss == "contrastive" and cfg.batch_size < 2):
        raise ConfigError(f"batch_size must be >= 1 (>= 2 for contrastive), got {cfg.batch_size}")
    if cfg.num_samples < 1:
        raise ConfigError(f"num_samples must be >= 1, got {cfg.num_samples}")
    if not cfg.lr > 0:
        raise ConfigError(f"lr must be positive, got {cfg.lr}")
    if cfg.weight_decay < 0 or cfg.grad_clip < 0 or cfg.kl_coef < 0:
        raise ConfigError("weight_decay, grad_clip and kl_coef must be >= 0")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ConfigError(f"min_lr_ratio must lie in [0, 1], got {cfg.min_lr_ratio}")
    if cfg.probe_size < 2:
        raise ConfigError(f"probe_size must be >= 2, got {cfg.probe_size}")
    if not 0.0 <= cfg.eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must lie in [0, 1), got {cfg.eval_fraction}")
    if cfg.model.startswith("hf-hub:"):
        raise ConfigError(
            "tuning an hf-hub: model is not supported (its checkpoint could not be reloaded by "
            "architecture name); use model=ARCH/TAG or model=ARCH pretrained=weights.safetensors"
        )
    return cfg


def model_arch(spec: str) -> str:
    """The architecture name a checkpoint of ``spec`` reloads with."""
    return spec.strip().partition("/")[0]


@dataclass
class TuneResult:
    """What a run did: where the weights are and the metrics before and after."""

    out_dir: Path
    checkpoint: Path | None
    arch: str
    step: int
    interrupted: bool = False
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    losses: list[tuple[int, float]] = field(default_factory=list)

    @property
    def load_hint(self) -> str:
        return f"vlmrm.load_clip({self.arch!r}, pretrained={os.fspath(self.checkpoint)!r})"


# --------------------------------------------------------------------------- helpers


class _StopRequest:
    """SIGINT/SIGTERM → finish the step, checkpoint, stop. A second SIGINT aborts."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __bool__(self) -> bool:
        return self.signal is not None


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        if mode in ("bf16", "fp16"):
            raise ConfigError(f"amp={mode} needs a CUDA device; use amp=off (or auto) on CPU")
        return None
    if mode == "off":
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def select_parameters(
    model: torch.nn.Module, lock: str = "none", train_params: str = "all"
) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze everything but the trainable parameters and return those (name, param).

    ``lock="image"``/``"text"`` freezes that tower; ``train_params="attn_in_proj"``
    trains only the attention in-projections (q/k/v) of the unlocked tower(s) — a small,
    well-conditioned subset that moves the similarity geometry without touching the
    embeddings. The temperature (``logit_scale``, ``logit_bias``) is always frozen.
    """
    if lock not in LOCKS:
        raise ConfigError(f"lock={lock!r} is not one of {LOCKS}")
    if train_params not in TRAIN_PARAMS:
        raise ConfigError(f"train_params={train_params!r} is not one of {TRAIN_PARAMS}")
    chosen = []
    for name, p in model.named_parameters():
        is_visual = name.startswith("visual.")
        train = name not in ("logit_scale", "logit_bias")
        if lock == "image" and is_visual or lock == "text" and not is_visual:
            train = False
        if train_params == "attn_in_proj" and "attn.in_proj_" not in name:
            train = False
        p.requires_grad_(train)
        if train:
            chosen.append((name, p))
    if not chosen:
        raise ConfigError(
            f"nothing to train with lock={lock} train_params={train_params} (this architecture "
            "may have no fused attention in-projections; use train_params=all)"
        )
    return chosen


def _param_groups(named: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """No weight decay on gains, biases, norms and embeddings' 1-D parameters (as CLIP)."""
    decay, no_decay = [], []
    for n, p in named:
        if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def cosine_schedule(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return f


class ItemScorer:
    """Differentiable ``τ·cos`` of ``(image path, caption)`` items for one CLIP.

    Distinct images and captions of a batch are encoded once; the image tower input is
    the reward core's own preprocessing (``ClipModel.preprocess``). A locked tower runs
    under ``no_grad`` and its embeddings are cached.
    """

    def __init__(
        self,
        clip: ClipModel,
        images: ImageCache,
        tau: torch.Tensor,
        *,
        lock: str = "none",
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        self.clip = clip
        self.images = images
        self.tau = tau
        self.lock = lock
        self.amp_dtype = amp_dtype
        self._img_cache: dict[str, torch.Tensor] = {}
        self._txt_cache: dict[str, torch.Tensor] = {}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.clip.device.type, dtype=self.amp_dtype)

    def _encode_images(self, paths: list[str]) -> torch.Tensor:
        arrays = [self.images(p) for p in paths]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        out: list[torch.Tensor | None] = [None] * len(paths)
        for idx in groups.values():
            x = self.clip.preprocess(np.stack([arrays[i] for i in idx]))
            with self._autocast():
                emb = self.clip.model.encode_image(x).float()
            for k, i in enumerate(idx):
                out[i] = emb[k]
        return torch.stack(out)  # type: ignore[arg-type]

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.clip.tokenizer(texts).to(self.clip.device)
        with self._autocast():
            return self.clip.model.encode_text(tokens).float()

    def _embed(self, keys: list[str], encode: Callable[[list[str]], torch.Tensor], locked: bool, cache: dict) -> torch.Tensor:
        if not locked:
            return encode(keys)
        missing = [k for k in keys if k not in cache]
        if missing:
            with torch.no_grad():
                for k, e in zip(missing, encode(missing), strict=True):
                    cache[k] = e.detach()
        return torch.stack([cache[k] for k in keys])

    def embed_each(self, paths: Sequence[str], texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of distinct images ``(P, D)`` and distinct captions ``(T, D)``."""
        img = self._embed(list(paths), self._encode_images, self.lock == "image", self._img_cache)
        txt = self._embed(list(texts), self._encode_texts, self.lock == "text", self._txt_cache)
        return img, txt

    def embed(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text embeddings ``(N, D)`` aligned with ``items`` (not normalised)."""
        paths = list(dict.fromkeys(p for p, _ in items))
        texts = list(dict.fromkeys(t for _, t in items))
        img, txt = self.embed_each(paths, texts)
        pi = {p: i for i, p in enumerate(paths)}
        ti = {t: i for i, t in enumerate(texts)}
        ii = torch.tensor([pi[p] for p, _ in items], device=img.device)
        tt = torch.tensor([ti[t] for _, t in items], device=txt.device)
        return img[ii], txt[tt]

    def scores(self, items: Sequence[Item]) -> torch.Tensor:
        img, txt = self.embed(items)
        return L.clip_scores(img, txt, self.tau)


def _batches(n_units: int, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[int, list[int]]]:
    """``(epoch, unit indices)`` from step ``start_step`` on: a seeded permutation per epoch."""
    per_epoch = max(1, math.ceil(n_units / batch_size))
    step = start_step
    while True:
        epoch, k = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n_units, generator=g).tolist()
        yield epoch, perm[k * batch_size : (k + 1) * batch_size]
        step += 1


def _pad(rows: list[list[float]], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    k = max(len(r) for r in rows)
    vals = torch.full((len(rows), k), fill, dtype=torch.float32)
    mask = torch.zeros((len(rows), k), dtype=torch.bool)
    for i, r in enumerate(rows):
        vals[i, : len(r)] = torch.tensor(r, dtype=torch.float32)
        mask[i, : len(r)] = True
    return vals, mask


def _atomic_save(write: Callable[[str], None], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(os.fspath(tmp))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- trainer


class Trainer:
    """One tuning run; :func:`train` is the usual entry point."""

    def __init__(self, cfg: TuneConfig, callback: Callable[[int, dict[str, float]], None] | None = None):
        self.cfg = validate_config(cfg)
        self.callback = callback
        self.out = Path(cfg.out)
        self.say = (lambda *a: None) if cfg.quiet else (lambda *a: print(*a, flush=True))
        self.images = ImageCache()
        self.step = 0
        self.losses: list[tuple[int, float]] = []
        self.history: list[dict[str, Any]] = []
        self.before: dict[str, Any] = {}
        self.ref_table: dict[Item, float] = {}
        self._eval_ref: dict[Item, float] | None = None

    # ----------------------------------------------------------------- setup
    def _load_data(self) -> None:
        cfg = self.cfg
        root = cfg.image_root or None
        sets = load_ranked_sets(cfg.data, root)
        if cfg.eval_data:
            self.train_sets, self.eval_sets = sets, load_ranked_sets(cfg.eval_data, root)
        else:
            self.train_sets, self.eval_sets = split_sets(sets, cfg.eval_fraction, cfg.seed)
        if not self.train_sets:
            raise ConfigError(f"no training data left after the eval split of {cfg.data!r}")
        self.vsr: list[VSRExample] = load_vsr(cfg.vsr, cfg.vsr_image_root or None) if cfg.vsr else []
        if cfg.probe:
            self.probe: list[Item] = load_image_captions(cfg.probe, root)[: cfg.probe_size]
        else:
            src = self.eval_sets or self.train_sets
            probe = []
            for s in src:
                if s.anchor_kind == "image":
                    probe.append(s.item(s.top()[0]))
            probe = list(dict.fromkeys(probe))
            self.probe = probe[: cfg.probe_size] if len({p for p, _ in probe}) >= 2 else []
        # training units
        if cfg.loss in PAIRWISE:
            self.pairs: list[PreferencePair] = ranking_to_pairs(self.train_sets, cfg.pairs, cfg.pair_weighting)
            if not self.pairs:
                raise ConfigError(f"{cfg.data!r} yields no preference pairs")
            self.n_units = len(self.pairs)
        elif cfg.loss == "contrastive":
            pos = [s.item(i) for s in self.train_sets for i in s.top()]
            self.positives: list[Item] = list(dict.fromkeys(pos))
            if len(self.positives) < 2:
                raise ConfigError("contrastive fine-tuning needs at least 2 distinct image–caption pairs")
            self.n_units = len(self.positives)
        else:
            self.n_units = len(self.train_sets)

    def _all_items(self) -> list[Item]:
        items = [it for s in (*self.train_sets, *self.eval_sets) for it in s.items()]
        return list(dict.fromkeys(items))

    def _build_model(self) -> None:
        cfg = self.cfg
        device = None if cfg.device in ("", "auto") else cfg.device
        self.clip = load_clip(cfg.model, device=device, precision="fp32", pretrained=cfg.pretrained or None)
        self.device = self.clip.device
        self.amp_dtype = _resolve_amp(cfg.amp, self.device)
        self.clip.model.eval()
        self.tau = L.frozen_temperature(self.clip.model.logit_scale).to(self.device)
        self.trainable = select_parameters(self.clip.model, cfg.lock, cfg.train_params)
        self.scorer = ItemScorer(self.clip, self.images, self.tau, lock=cfg.lock, amp_dtype=self.amp_dtype)
        self.optimizer = torch.optim.AdamW(_param_groups(self.trainable, cfg.weight_decay), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_schedule(cfg.warmup_steps, max(cfg.steps, 1), cfg.min_lr_ratio)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ref_scorer: ItemScorer | None = None

    def _init_reference(self) -> None:
        """Reference scores from the model as loaded (call before any update)."""
        cfg = self.cfg
        if cfg.loss == "contrastive" or cfg.loss == "bt" or (cfg.loss == "reinforce" and cfg.kl_coef == 0):
            return
        if cfg.precompute_ref:
            if not self.ref_table:
                items = self._all_items()
                self.say(f"precomputing reference scores for {len(items)} image–caption items")
                # The training forward pass itself (same preprocessing, same autocast), so
                # h is exactly 0 at step 0 whatever the precision.
                with torch.no_grad():
                    chunks = [self.scorer.scores(items[k : k + 256]).cpu() for k in range(0, len(items), 256)]
                self.ref_table = dict(zip(items, torch.cat(chunks).tolist(), strict=True))
            return
        device = None if cfg.device in ("", "auto") else cfg.device
        ref = load_clip(cfg.model, device=device, precision="fp32", pretrained=cfg.pretrained or None)
        ref.model.eval().requires_grad_(False)
        self.ref_scorer = ItemScorer(ref, self.images, self.tau, lock="none", amp_dtype=self.amp_dtype)

    def _ref_scores(self, items: Sequence[Item]) -> torch.Tensor:
        if self.ref_scorer is not None:
            with torch.no_grad():
                return self.ref_scorer.scores(items).detach()
        return torch.tensor([self.ref_table[it] for it in items], dtype=torch.float32, device=self.device)

    # ----------------------------------------------------------------- checkpoints
    @property
    def model_path(self) -> Path:
        return self.out / MODEL_FILE

    @property
    def state_path(self) -> Path:
        return self.out / STATE_FILE

    def save_checkpoint(self) -> Path:
        from safetensors.torch import save_model

        self.out.mkdir(parents=True, exist_ok=True)
        meta = {"step": str(self.step), "arch": model_arch(self.cfg.model), "loss": self.cfg.loss}
        _atomic_save(lambda p: save_model(self.clip.model, p, metadata=meta), self.model_path)
        state = {
            "step": self.step,
            "config": asdict(self.cfg),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ref_table": self.ref_table,
            "losses": self.losses,
            "history": self.history,
            "before": self.before,
        }
        _atomic_save(lambda p: torch.save(state, p), self.state_path)
        return self.model_path

    def _maybe_resume(self) -> bool:
        cfg = self.cfg
        exists = self.state_path.is_file() and self.model_path.is_file()
        if cfg.resume == "false" or (cfg.resume == "auto" and not exists):
            return False
        if not exists:
            raise ConfigError(f"resume=true but {self.out} holds no checkpoint ({STATE_FILE} + {MODEL_FILE})")
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"cannot read {self.state_path}: {exc}; delete it or use resume=false") from None
        old = state.get("config", {})
        changed = sorted(
            k for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES and k in old and old[k] != v
        )
        if changed:
            diffs = ", ".join(f"{k}: {old[k]!r} → {getattr(cfg, k)!r}" for k in changed)
            raise ConfigError(
                f"{self.out} holds a run with other settings ({diffs}); use another out=..., "
                "the same settings, or resume=false to start over"
            )
        from safetensors import safe_open
        from safetensors.torch import load_model

        with safe_open(os.fspath(self.model_path), "pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("step") != str(state["step"]):
            raise ConfigError(
                f"{self.model_path} (step {meta.get('step')}) and {self.state_path} (step "
                f"{state['step']}) disagree; the last save was cut off — use resume=false"
            )
        load_model(self.clip.model, os.fspath(self.model_path), device=str(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.ref_table = state.get("ref_table") or {}
        self.losses = [tuple(x) for x in state.get("losses", [])]
        self.history = list(state.get("history", []))
        self.before = dict(state.get("before", {}))
        # a longer run stretches the cosine schedule over the new total
        self.scheduler.lr_lambdas[0] = cosine_schedule(cfg.warmup_steps, max(cfg.steps, 1), cfg.min_lr_ratio)
        self.say(f"resumed from {self.out} at step {self.step}")
        return True

    # ----------------------------------------------------------------- one step
    def _pairwise_loss(self, pairs: list[PreferencePair]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        items = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        s = self.scorer.scores(items)
        n = len(pairs)
        s_w, s_l = s[:n], s[n:]
        w = torch.tensor([p.weight for p in pairs], dtype=torch.float32, device=s.device)
        if cfg.loss == "bt":
            loss = L.bradley_terry_loss(s_w, s_l, w)
            h = (s_w - s_l).detach()
        else:
            ref = self._ref_scores(items)
            h = L.preference_margin(s_w, s_l, ref[:n], ref[n:])
            if cfg.loss == "dpo":
                loss = L.dpo_loss(h, cfg.beta, cfg.label_smoothing, w)
            elif cfg.loss == "ipo":
                loss = L.ipo_loss(h, cfg.beta, w)
            else:
                loss = L.hinge_loss(h, cfg.beta, w)
        acc = float(((h > 0).float()).mean())
        return loss, {"margin": float(h.detach().mean()), "pair_acc": acc}

    def _set_scores(self, sets: list[RankedSet], ref: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        items = [it for s in sets for it in s.items()]
        flat = self.scorer.scores(items)
        rflat = self._ref_scores(items) if ref else None
        k = max(len(s) for s in sets)
        scores = flat.new_zeros((len(sets), k))
        refs = flat.new_zeros((len(sets), k)) if ref else None
        mask = torch.zeros((len(sets), k), dtype=torch.bool, device=flat.device)
        rows, cols = [], []
        for i, s in enumerate(sets):
            rows.extend([i] * len(s))
            cols.extend(range(len(s)))
            mask[i, : len(s)] = True
        r = torch.tensor(rows, device=flat.device)
        c = torch.tensor(cols, device=flat.device)
        scores = scores.index_put((r, c), flat)
        if refs is not None and rflat is not None:
            refs = refs.index_put((r, c), rflat)
        return scores, mask, refs

    def _listwise_loss(self, sets: list[RankedSet]) -> tuple[torch.Tensor, dict[str, float]]:
        scores, mask, refs = self._set_scores(sets, ref=True)
        w = torch.tensor([s.weight for s in sets], dtype=torch.float32, device=scores.device)
        loss = L.listwise_dpo_loss(scores, refs, self.cfg.beta, mask, w)  # type: ignore[arg-type]
        top1 = float((scores.masked_fill(~mask, -1e9).argmax(-1) == 0).float().mean())
        return loss, {"top1": top1}

    def _reinforce_loss(self, sets: list[RankedSet]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        use_ref = cfg.kl_coef > 0
        scores, mask, refs = self._set_scores(sets, ref=use_ref)
        ranks, _ = _pad([list(map(float, s.ranks)) for s in sets])
        ranks = ranks.to(scores.device)
        probs = torch.softmax(scores.detach().masked_fill(~mask, -1e9), -1)
        rewards = L.candidate_rewards(ranks, cfg.reward, probs, mask)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919 * self.step + 1)
        out = L.reinforce_loss(
            scores, rewards, num_samples=cfg.num_samples, ref_logits=refs, kl_coef=cfg.kl_coef,
            mask=mask, generator=g,
        )
        return out.loss, {"reward": float(out.mean_reward), "kl": float(out.kl)}

    def _contrastive_loss(self, items: list[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        # Repeated frames and captions are merged, and every frame of a caption counts as
        # its positive: a duplicate must not become a false negative, nor be thrown away.
        paths = list(dict.fromkeys(p for p, _ in items))
        texts = list(dict.fromkeys(t for _, t in items))
        if len(paths) < 2 or len(texts) < 2:
            return torch.zeros((), device=self.device, requires_grad=False), {"skipped": 1.0}
        pi = {p: k for k, p in enumerate(paths)}
        ti = {t: k for k, t in enumerate(texts)}
        positives = torch.zeros((len(paths), len(texts)), dtype=torch.bool)
        for p, t in items:
            positives[pi[p], ti[t]] = True
        img, txt = self.scorer.embed_each(paths, texts)
        return L.clip_contrastive_loss(img, txt, self.tau, positives), {}

    def _loss(self, idx: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        if cfg.loss in PAIRWISE:
            return self._pairwise_loss([self.pairs[i] for i in idx])
        if cfg.loss == "contrastive":
            return self._contrastive_loss([self.positives[i] for i in idx])
        sets = [self.train_sets[i] for i in idx]
        if cfg.loss == "listwise":
            return self._listwise_loss(sets)
        return self._reinforce_loss(sets)

    def _train_step(self, idx: list[int]) -> dict[str, float]:
        loss, stats = self._loss(idx)
        if not loss.requires_grad:  # e.g. a contrastive batch of duplicates
            return {"loss": float(loss), **stats}
        if not torch.isfinite(loss):
            raise ConfigError(
                f"loss became {float(loss)} at step {self.step}; lower lr=... or beta=..., or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for _, p in self.trainable]
        if self.cfg.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        else:
            gnorm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in params if p.grad is not None])
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.clip.clear_text_cache()
        return {"loss": float(loss.detach()), "grad_norm": float(gnorm), **stats}

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, Any]:
        """Preference accuracy and objective on the eval split, VSR and probe rewards.

        Every eval item is encoded once; the eval loss reuses those scores.
        """
        m: dict[str, Any] = {}
        if self.eval_sets:
            self.clip.clear_text_cache()
            cos = set_scores(self.clip, self.eval_sets, self.images)
            m.update({f"pref/{k}": v for k, v in pairwise_accuracy(self.eval_sets, cos).items()})
            m["pref/top1"] = listwise_top1(self.eval_sets, cos)
            if self.cfg.loss in (*PAIRWISE, "listwise"):
                m["loss"] = self._eval_loss(cos)
        m.update(evaluate_model(self.clip, (), vsr=self.vsr, probe=self.probe, images=self.images))
        return m

    def _eval_reference(self) -> dict[Item, float]:
        if self.ref_table:
            return self.ref_table
        if self._eval_ref is None:
            assert self.ref_scorer is not None
            items = list(dict.fromkeys(it for s in self.eval_sets for it in s.items()))
            ref = cosine_scores(self.ref_scorer.clip, items, self.images) * float(self.tau)
            self._eval_ref = dict(zip(items, ref.tolist(), strict=True))
        return self._eval_ref

    @torch.no_grad()
    def _eval_loss(self, cos: list[np.ndarray]) -> float:
        cfg = self.cfg
        tau = float(self.tau)
        score = {it: tau * float(c) for s, cs in zip(self.eval_sets, cos, strict=True) for it, c in zip(s.items(), cs, strict=True)}
        ref = self._eval_reference() if cfg.loss != "bt" else {}
        if cfg.loss == "listwise":
            vals, mask = _pad([[score[it] for it in s.items()] for s in self.eval_sets])
            refs, _ = _pad([[ref[it] for it in s.items()] for s in self.eval_sets])
            w = torch.tensor([s.weight for s in self.eval_sets])
            return float(L.listwise_dpo_loss(vals, refs, cfg.beta, mask, w))
        pairs = ranking_to_pairs(self.eval_sets, cfg.pairs, cfg.pair_weighting)
        s_w = torch.tensor([score[p.chosen] for p in pairs], dtype=torch.float64)
        s_l = torch.tensor([score[p.rejected] for p in pairs], dtype=torch.float64)
        w = torch.tensor([p.weight for p in pairs], dtype=torch.float64)
        if cfg.loss == "bt":
            return float(L.bradley_terry_loss(s_w, s_l, w))
        r_w = torch.tensor([ref[p.chosen] for p in pairs], dtype=torch.float64)
        r_l = torch.tensor([ref[p.rejected] for p in pairs], dtype=torch.float64)
        h = L.preference_margin(s_w, s_l, r_w, r_l)
        if cfg.loss == "dpo":
            return float(L.dpo_loss(h, cfg.beta, cfg.label_smoothing, w))
        if cfg.loss == "ipo":
            return float(L.ipo_loss(h, cfg.beta, w))
        return float(L.hinge_loss(h, cfg.beta, w))

    # ----------------------------------------------------------------- loop
    def _log_metrics(self, writer: Any, metrics: dict[str, Any], step: int, prefix: str = "") -> None:
        if writer is None:
            return
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                writer.add_scalar(f"{prefix}{k}", float(v), step)

    def _write_metrics(self, after: dict[str, Any], interrupted: bool) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {
            "step": self.step,
            "interrupted": interrupted,
            "arch": model_arch(self.cfg.model),
            "checkpoint": os.fspath(self.model_path) if self.model_path.is_file() else None,
            "before": self.before,
            "after": after,
            "history": self.history,
        }
        (self.out / "metrics.json").write_text(json.dumps(doc, indent=2, default=str))

    def run(self) -> TuneResult:
        cfg = self.cfg
        _seed_everything(cfg.seed)
        self._load_data()
        self._build_model()
        resumed = self._maybe_resume()
        self._init_reference()
        self.out.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        (self.out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        n_train = sum(p.numel() for _, p in self.trainable)
        self.say(
            f"tuning {cfg.model} with loss={cfg.loss}: {len(self.train_sets)} train / {len(self.eval_sets)} eval sets, "
            f"{self.n_units} training units, {n_train:,} trainable parameters, device {self.device}"
        )
        writer = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(os.fspath(self.out / "tb"), purge_step=self.step if resumed else None)
        if not resumed or not self.before:
            self.before = self.evaluate()
            self._log_metrics(writer, self.before, self.step, "eval/")
            self.say("before: " + _fmt(self.before))
        interrupted = False
        t0, last_log = time.perf_counter(), self.step
        try:
            with _StopRequest() as stop:
                batches = _batches(self.n_units, cfg.batch_size, cfg.seed, self.step)
                while self.step < cfg.steps:
                    _, idx = next(batches)
                    stats = self._train_step(idx)
                    self.step += 1
                    self.losses.append((self.step, stats["loss"]))
                    stats["lr"] = self.scheduler.get_last_lr()[0]
                    self._log_metrics(writer, stats, self.step, "train/")
                    if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                        rate = (self.step - last_log) / max(time.perf_counter() - t0, 1e-9)
                        t0, last_log = time.perf_counter(), self.step
                        self.say(f"step {self.step}/{cfg.steps} " + _fmt(stats) + f" ({rate:.2f} steps/s)")
                    if self.callback is not None:
                        self.callback(self.step, stats)
                    if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                        m = self.evaluate()
                        self.history.append({"step": self.step, **m})
                        self._log_metrics(writer, m, self.step, "eval/")
                        self.say(f"eval @ {self.step}: " + _fmt(m))
                    if stop:
                        interrupted = True
                        break
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                # still inside the handler: a Ctrl-C now cannot cut the final save in half
                checkpoint = self.save_checkpoint() if cfg.steps > 0 or resumed else None
            if interrupted:
                after: dict[str, Any] = {}
                self.say(
                    f"stopped by signal at step {self.step}; checkpoint saved to {self.out} — "
                    "run the same command again to resume"
                )
            elif cfg.steps == 0:
                after = dict(self.before)
            else:
                after = self.evaluate()
                self.history.append({"step": self.step, **after})
                self._log_metrics(writer, after, self.step, "eval/")
                self.say("after:  " + _fmt(after))
            self._write_metrics(after, interrupted)
        finally:
            if writer is not None:
                writer.close()
        result = TuneResult(
            out_dir=self.out,
            checkpoint=checkpoint,
            arch=model_arch(cfg.model),
            step=self.step,
            interrupted=interrupted,
            before=self.before,
            after=after,
            losses=list(self.losses),
        )
        if checkpoint is not None and not interrupted:
            self.say(f"saved {checkpoint}; load it with {result.load_hint}")
        return result


def _fmt(m: dict[str, Any]) -> str:
    parts = []
    for k, v in m.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif isinstance(v, int) and not isinstance(v, bool):
            parts.append(f"{k} {v}")
    return " | ".join(parts)


def train(
    cfg: TuneConfig | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    **overrides: Any,
) -> TuneResult:
    """Run preference tuning; ``overrides`` set :class:`TuneConfig` fields.

    ``callback(step, stats)`` is called after every optimisation step (for tests and
    notebooks). Returns a :class:`TuneResult` with the checkpoint path and metrics.
    """
    cfg = TuneConfig() if cfg is None else cfg
    known = set(TuneConfig.__dataclass_fields__)
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown setting(s) {bad}; known: {sorted(known)}")
    if overrides:
        cfg = TuneConfig(**{**asdict(cfg), **overrides})
    return Trainer(cfg, callback).run()
