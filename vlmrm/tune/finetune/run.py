"""CLIP fine-tuning on image–caption data: the supervised and RL stages, validation, WiSE-FT.

Why it is built this way:

* The split is by image (:func:`vlmrm.tune.data.captions.split_by_image`), seeded and
  saved as ``split.json``; a rerun in the same folder reads it back, so test images never
  leak into training across reruns.
* Each epoch pairs every training image with one of its captions (drawn from
  ``(seed, epoch)``), so all captions are seen over epochs while a batch never holds two
  rows of the same image (no false negatives).
* Supervised: the symmetric CLIP cross-entropy over the batch, with τ frozen (the
  loaded ``exp(logit_scale)``) or learnable (``logit_scale`` trains, capped at 100).
* RL (as CLIP_RL_FT does): the policy is the softmax over the batch's captions for an
  image (and over its images for a caption); sampled candidates are rewarded
  ``+p`` when right and ``−p`` when wrong (correctness × confidence,
  :func:`vlmrm.tune.objectives.losses.candidate_rewards`), REINFORCE with a mean baseline.
* After every epoch the val split's mean Recall@1 decides whether ``model.safetensors``
  is replaced: the file always holds the best-on-val weights, a plain open_clip state
  dict for ``load_clip(ARCH, pretrained=...)``.
* WiSE-FT (``wise_alpha=α``): ``(1−α)·θ₀ + α·θ`` of every floating-point weight, saved
  beside the tuned model and scored on test too.
* A run resumes (:mod:`vlmrm.tune.finetune.checkpoint`): every ``checkpoint_every`` steps,
  at every epoch's end and on Ctrl-C/SIGTERM the trainer (weights, best weights, optimiser,
  position in the epoch, RNG states, histories) is saved as one checkpoint unit, and the
  same command continues from the newest complete one — with the batches, weights and
  history rows a straight run would have had (each step and epoch once).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrm.errors import ConfigError
from vlmrm.models import load_clip, resolve_device, training_precision
from vlmrm.runtime.atomic import atomic_write, atomic_write_json
from vlmrm.runtime.rng import restore_rng_state, rng_state
from vlmrm.runtime.stop import GracefulStop
from vlmrm.tune.data.captions import (
    CaptionedImage,
    load_caption_data,
    load_split,
    save_split,
    split_by_image,
)
from vlmrm.tune.data.images import ImageCache
from vlmrm.tune.eval.retrieval import retrieval_metrics
from vlmrm.tune.finetune.checkpoint import (
    CHECKPOINTS,
    WEIGHTS,
    load_checkpoint,
    restore_best,
    save_checkpoint,
    write_weights,
)
from vlmrm.tune.finetune.settings import FinetuneSettings
from vlmrm.tune.objectives import losses as L
from vlmrm.tune.objectives.scorer import ItemScorer, param_groups

MODEL_FILE = "model.safetensors"
WISE_FILE = "model_wise.safetensors"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"


def prepare_split(cfg: FinetuneSettings) -> dict[str, list[CaptionedImage]]:
    """The run's train/val/test images: ``out/split.json`` when there, else a new seeded split."""
    data = load_caption_data(
        cfg.data, cfg.image_root or None, image_column=cfg.image_column, text_column=cfg.text_column,
        cache=Path(cfg.out) / "hf_images",
    )  # fmt: skip
    saved = Path(cfg.out) / SPLIT_FILE
    if saved.exists():
        return load_split(saved, data)
    split = split_by_image(data, cfg.seed, tuple(cfg.split_fractions))  # type: ignore[arg-type]
    if not split["train"]:
        raise ConfigError(f"{cfg.data!r} leaves no training images after the split; add data")
    save_split(saved, split, cfg.seed)
    return split


def wise_interpolate(original: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT weights ``(1−α)·θ₀ + α·θ`` (non-float buffers are the tuned ones)."""
    out = {}
    for k, v in tuned.items():
        v0 = original[k].to(v.device)
        out[k] = torch.lerp(v0.float(), v.float(), float(alpha)).to(v.dtype) if v.is_floating_point() else v
    return out


@dataclass
class Position:
    """Where training stands: the next batch to train is ``batch`` of epoch ``epoch`` (both
    0-based) of stage ``stage``; ``stage_step`` counts that stage's steps so far."""

    stage: int = 0
    epoch: int = 0
    batch: int = 0
    stage_step: int = 0


class Finetuner:
    """One fine-tuning run; :func:`finetune` is the usual entry point.

    ``callback(step, row)`` is called after every optimiser step with that step's history
    row (for tests and notebooks).
    """

    def __init__(self, cfg: FinetuneSettings, callback: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.cfg = cfg.validate()
        self.out = Path(cfg.out)
        self.callback = callback
        self.say = (lambda *a: print(*a, flush=True)) if cfg.progress else (lambda *a: None)
        self.images = ImageCache()
        torch.manual_seed(cfg.seed)
        self.split = prepare_split(cfg)
        device = resolve_device(cfg.device)
        self.clip = load_clip(cfg.model, device=device, pretrained=cfg.pretrained or None,
                              fast_resize=False, **training_precision(cfg.precision, device))  # fmt: skip
        self.clip.model.eval()
        self.original = {k: v.detach().cpu().clone() for k, v in self.clip.model.state_dict().items()}
        self.trainable = self._select_parameters()
        self.scorer = ItemScorer(self.clip, self.images, self._tau(), lock=cfg.lock)
        self.history: list[dict[str, Any]] = []  # one row per finished epoch
        self.steps: list[dict[str, Any]] = []  # one row per optimiser step
        self.step = 0  # optimiser steps over all stages
        self.position = Position()
        self.epoch_losses: list[float] = []
        self.best = -1.0
        self.zero_shot: dict[str, float] = {}
        self._optimizer_state: dict[str, Any] | None = None

    def _select_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        chosen = []
        for name, p in self.clip.model.named_parameters():
            visual = name.startswith("visual.")
            if name in ("logit_scale", "logit_bias"):
                train = name == "logit_scale" and self.cfg.temperature == "learnable"
            else:
                train = not (self.cfg.lock == "image" and visual or self.cfg.lock == "text" and not visual)
            p.requires_grad_(train)
            if train:
                chosen.append((name, p))
        return chosen

    def _tau(self) -> torch.Tensor:
        scale = self.clip.model.logit_scale
        if self.cfg.temperature == "learnable":
            return scale.exp().clamp(max=L.MAX_TEMPERATURE)
        return L.frozen_temperature(scale).to(self.clip.device)

    # ------------------------------------------------------------------ batches
    def _epoch_pairs(self, epoch: int) -> list[tuple[str, str]]:
        """Each training image with one of its captions, in a seeded order."""
        rng = np.random.default_rng([self.cfg.seed, epoch])
        train = self.split["train"]
        pairs = [(d.image, d.captions[int(rng.integers(len(d.captions)))]) for d in train]
        return [pairs[i] for i in rng.permutation(len(pairs))]

    def _epoch_batches(self, epoch: int) -> list[list[tuple[str, str]]]:
        """The epoch's batches (a last batch of one pair has no negatives and is dropped)."""
        pairs, bs = self._epoch_pairs(epoch), self.cfg.batch_size
        batches = [pairs[s : s + bs] for s in range(0, len(pairs) - 1, bs)]
        return [b for b in batches if len(b) >= 2]

    def _logits(self, batch: list[tuple[str, str]]) -> torch.Tensor:
        paths = [p for p, _ in batch]
        texts = [t for _, t in batch]
        img, txt = self.scorer.embed_each(paths, texts)
        i = torch.nn.functional.normalize(img.float(), dim=-1)
        t = torch.nn.functional.normalize(txt.float(), dim=-1)
        return self._tau() * i @ t.T

    def _sft_loss(self, batch: list[tuple[str, str]]) -> torch.Tensor:
        logits = self._logits(batch)
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                      + torch.nn.functional.cross_entropy(logits.T, target))  # fmt: skip

    def _rl_loss(self, batch: list[tuple[str, str]], step: int) -> torch.Tensor:
        logits = self._logits(batch)
        ranks = 1.0 - torch.eye(logits.shape[0], device=logits.device)  # 0 = the right candidate
        loss = logits.new_zeros(())
        for k, lg in enumerate((logits, logits.T)):
            rewards = L.candidate_rewards(ranks, "confidence", torch.softmax(lg.detach(), -1))
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + 2 * step + k)
            loss = loss + 0.5 * L.reinforce_loss(lg, rewards, num_samples=self.cfg.num_samples, generator=g).loss
        return loss

    # ------------------------------------------------------------------ checkpoints
    def _save(self, path: Path, state: dict[str, torch.Tensor] | None = None) -> None:
        sd = state if state is not None else self.clip.model.state_dict()
        atomic_write(path, lambda tmp: write_weights(tmp, sd))

    def _checkpoint(self, optimizer: torch.optim.Optimizer) -> None:
        """The whole trainer as one checkpoint unit at the current step and position."""
        state = {
            "position": asdict(self.position), "epoch_losses": list(self.epoch_losses),
            "history": self.history, "steps": self.steps, "best": self.best, "zero_shot": self.zero_shot,
            "optimizer": optimizer.state_dict(), "rng": rng_state(), "settings": asdict(self.cfg),
        }  # fmt: skip
        save_checkpoint(self.out, self.step, self.clip.model, state)

    def _resume(self) -> bool:
        """Load the newest checkpoint of ``out`` (``resume=auto|true``); True when resumed."""
        found = load_checkpoint(self.cfg, self.out)
        if found is None:
            return False
        unit, state = found
        from safetensors.torch import load_file

        self.clip.model.load_state_dict(load_file(os.fspath(unit / WEIGHTS), device=str(self.clip.device)))
        restore_best(self.out, unit)
        self.step = int(state["step"])
        self.position = Position(**state["position"])
        self.epoch_losses = list(state["epoch_losses"])
        self.history, self.steps = list(state["history"]), list(state["steps"])
        self.best, self.zero_shot = float(state["best"]), dict(state["zero_shot"])
        self._optimizer_state = state["optimizer"]
        restore_rng_state(state["rng"])
        p = self.position
        print(f"resuming {self.out} at step {self.step} (stage {p.stage + 1}, epoch {p.epoch + 1}, "
              f"batch {p.batch + 1}) from {CHECKPOINTS}/{unit.name}", file=sys.stderr, flush=True)  # fmt: skip
        return True

    # ------------------------------------------------------------------ run
    def evaluate(self, part: str) -> dict[str, float]:
        return retrieval_metrics(self.clip, self.split[part], self.cfg.batch_size, self.images)

    def _train_step(self, name: str, batch: list[tuple[str, str]], optimizer: torch.optim.Optimizer) -> float:
        p = self.position
        loss = self._sft_loss(batch) if name == "sft" else self._rl_loss(batch, p.stage_step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.step += 1
        p.stage_step += 1
        return float(loss.detach())

    def _end_epoch(self, name: str, epoch: int) -> None:
        """Validate, record the epoch's row, and keep the weights when they are the best yet."""
        val = self.evaluate("val")
        losses = self.epoch_losses
        row = {"stage": name, "epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
               **{f"val/{k}": v for k, v in val.items()}}  # fmt: skip
        self.history.append(row)
        better = val["mean_R@1"] > self.best
        if better:
            self.best = val["mean_R@1"]
            self._save(self.out / MODEL_FILE)
        self.say(f"{name} epoch {epoch + 1}: loss {row['loss']:.4f}, val R@1 i2t "
                 f"{val['i2t_R@1']:.3f} t2i {val['t2i_R@1']:.3f}{' (best, saved)' if better else ''}")  # fmt: skip

    def _train(self, stages: list[tuple[str, int, float]], stop: GracefulStop) -> bool:
        """Train from :attr:`position` to the end; True when a signal stopped it (checkpoint saved).

        A checkpoint is saved every ``checkpoint_every`` steps, at every epoch's end and when
        a signal arrives (after the step in progress), so a rerun sees the same batches a
        straight run would.
        """
        cfg, p = self.cfg, self.position
        while p.stage < len(stages):
            name, epochs, lr = stages[p.stage]
            optimizer = torch.optim.AdamW(param_groups(self.trainable, cfg.weight_decay), lr=lr)
            if self._optimizer_state is not None:  # resumed inside this stage
                optimizer.load_state_dict(self._optimizer_state)
                self._optimizer_state = None
            while p.epoch < epochs:
                batches = self._epoch_batches(len(self.history))
                while p.batch < len(batches):
                    loss = self._train_step(name, batches[p.batch], optimizer)
                    p.batch += 1
                    self.epoch_losses.append(loss)
                    row = {"step": self.step, "stage": name, "epoch": p.epoch + 1, "loss": loss}
                    self.steps.append(row)
                    if self.callback is not None:
                        self.callback(self.step, row)
                    if stop.requested:
                        self._checkpoint(optimizer)
                        return True
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and p.batch < len(batches):
                        self._checkpoint(optimizer)
                self._end_epoch(name, p.epoch)
                p.epoch, p.batch, self.epoch_losses = p.epoch + 1, 0, []
                self._checkpoint(optimizer)
                if stop.requested:
                    return True
            self.position = p = Position(stage=p.stage + 1)
        return False

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        sizes = {k: len(v) for k, v in self.split.items()}
        self.say(f"fine-tuning on {sizes['train']} images (val {sizes['val']}, test {sizes['test']}); "
                 f"split saved in {os.fspath(self.out / SPLIT_FILE)}")  # fmt: skip
        if not self._resume():
            self.zero_shot = self.evaluate("test")
            self.best = self.evaluate("val")["mean_R@1"]
            self._save(self.out / MODEL_FILE)  # the untuned weights until an epoch beats them on val
        stages = [("sft", cfg.epochs, cfg.lr), ("rl", cfg.rl_epochs, cfg.rl_lr)]
        chosen = {"sft": stages[:1], "rl": stages[1:], "sft+rl": stages}[cfg.stage]
        with GracefulStop() as stop:
            interrupted = self._train(chosen, stop)
        doc: dict[str, Any] = {"split": sizes, "zero_shot": self.zero_shot, "step": self.step,
                               "history": self.history, "steps": self.steps, "interrupted": interrupted,
                               "signal": stop.name if interrupted else None}  # fmt: skip
        if interrupted:  # the checkpoint is saved; testing is for the finished run
            atomic_write_json(self.out / METRICS_FILE, doc)
            return doc
        from safetensors.torch import load_file

        best = load_file(os.fspath(self.out / MODEL_FILE))
        self.clip.model.load_state_dict(best)
        doc["tuned"] = self.evaluate("test")
        if cfg.wise_alpha is not None:
            wise = wise_interpolate(self.original, best, float(cfg.wise_alpha))
            self._save(self.out / WISE_FILE, wise)
            self.clip.model.load_state_dict(wise)
            doc["wise"] = {"alpha": float(cfg.wise_alpha), **self.evaluate("test")}
        atomic_write_json(self.out / METRICS_FILE, doc)
        self._report(doc)
        return doc

    def _report(self, doc: dict[str, Any]) -> None:
        cols = [("zero-shot", doc["zero_shot"]), ("tuned", doc["tuned"])]
        if "wise" in doc:
            cols.append((f"WiSE α={doc['wise']['alpha']}", doc["wise"]))
        self.say("test " + " | ".join(f"{n:>12}" for n, _ in cols))
        for key in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10",
                    "i2t_accuracy", "t2i_accuracy"):  # fmt: skip
            self.say(f"{key:<12} " + " | ".join(f"{100 * m[key]:>11.1f}%" for _, m in cols))
        arch = self.cfg.model.partition("/")[0]
        self.say(f"load the tuned model with load_clip({arch!r}, pretrained={os.fspath(self.out / MODEL_FILE)!r})")


def fine_tune(
    cfg: FinetuneSettings | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run fine-tuning, continuing the run in ``out`` if it holds a checkpoint
    (``resume=auto``); returns the metrics document (also written to ``out/metrics.json``).

    ``callback(step, row)`` is called after every optimiser step.
    """
    cfg = cfg or FinetuneSettings()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise ConfigError(f"unknown fine-tuning setting {k!r}")
        setattr(cfg, k, v)
    return Finetuner(cfg, callback).run()


#: The package exports this function as ``vlmrm.tune.fine_tune``, not ``finetune``: that is the
#: name of its command module (``python -m vlmrm.tune.finetune``), and once that module is
#: imported Python binds the package attribute to it, so the name would mean either.
finetune = fine_tune
