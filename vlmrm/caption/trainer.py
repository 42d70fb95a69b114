"""Training a captioner's mapper (ClipCap on image embeddings, CapDec on noisy text embeddings).

The loss is the LM's token cross-entropy of the caption (and its end-of-text token) given
the mapper's prefix, averaged over the batch's real tokens (padding masked). Only the
mapper trains: AdamW (lr 2e-5, eps 1e-6, weight decay 0), linear warm-up over 5,000 steps
then linear decay, batch 40, 10 epochs, mixed precision on CUDA.

A run is resumable: its state (mapper, optimiser, schedule, scaler, position in the epoch)
is saved every ``checkpoint_every`` steps, at each epoch's end and on Ctrl-C/SIGTERM
(:class:`~vlmrm.runtime.stop.GracefulStop`) as a checkpoint unit
``<out>/checkpoints/step_<N>/checkpoint.pt`` (:mod:`vlmrm.runtime.units`: published whole,
checked against its manifest on resume, the last :data:`KEEP` kept), and the newest one is
also ``<out>/checkpoint.pt``. Running the same command again continues from the newest
checkpoint that passes its check (a damaged one is skipped with one warning line), with the
same batches a straight run would see. A run saved before checkpoint units (a lone
``<out>/checkpoint.pt``) resumes from that file.
``<out>/mapper.safetensors`` is the captioner to use (``captioner=`` of
``python -m vlmrm.tta task=caption``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import Any

import torch

from vlmrm.caption.captioner import ClipCaptioner, mapper_for, save_mapper
from vlmrm.caption.features import TrainingSet, capdec_noise, training_set
from vlmrm.caption.settings import CaptionTrainSettings
from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write, atomic_write_json
from vlmrm.runtime.stop import GracefulStop
from vlmrm.runtime.units import (
    NoCheckpoint,
    list_units,
    newest_unit,
    prune_units,
    publish_copy,
    remove_unit,
    short_error,
    step_name,
    write_unit,
)

CHECKPOINT = "checkpoint.pt"
CHECKPOINTS = "checkpoints"
MAPPER = "mapper.safetensors"
#: How many checkpoints a captioner's training keeps (the newest, and one to fall back to).
KEEP = 2


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def batch_loss(
    captioner: ClipCaptioner, features: torch.Tensor, tokens: list[list[int]]
) -> torch.Tensor:
    """Mean token cross-entropy of captions given the prefixes of ``features`` (pads masked)."""
    prefix = captioner.prefix(features)
    ids, mask = captioner.targets(tokens)
    logits = captioner.token_logits(prefix, ids)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    return (ce * mask).sum() / mask.sum()


class CaptionTrainer:
    """One training run of the mapper; :meth:`run` returns True when a signal stopped it."""

    def __init__(self, cfg: CaptionTrainSettings) -> None:
        from vlmrm.caption.data import load_captions
        from vlmrm.caption.lm import load_lm
        from vlmrm.models import load_clip, resolve_device, training_precision

        self.cfg, self.out = cfg, cfg.out_dir()
        device = resolve_device(None if cfg.device == "auto" else cfg.device)
        data = load_captions(cfg.data, cfg.images, cfg.split, check_files=cfg.mode == "clipcap")
        if cfg.limit is not None:
            data.image_paths, data.image_ids = (
                data.image_paths[: cfg.limit],
                data.image_ids[: cfg.limit],
            )
            data.references = data.references[: cfg.limit]
        self.data = data
        clip = load_clip(cfg.model, device=device, pretrained=cfg.pretrained, resize_mode="center_crop",
                         **training_precision(cfg.precision, device))  # fmt: skip
        lm, vocab = load_lm(cfg.lm, device, cfg.tokenizer)
        torch.manual_seed(int(cfg.seed))
        mapper = mapper_for(clip, lm, prefix_length=cfg.prefix_length, layers=cfg.mapper_layers,
                            heads=cfg.mapper_heads, mlp_ratio=cfg.mlp_ratio)  # fmt: skip
        self.captioner = ClipCaptioner(clip, lm, vocab, mapper, cfg.max_tokens)
        self.device = device
        self.out.mkdir(parents=True, exist_ok=True)
        key = {"model": cfg.model, "pretrained": cfg.pretrained, "data": os.path.abspath(cfg.data),
               "split": cfg.split, "mode": cfg.mode, "lm": cfg.lm, "tokenizer": cfg.tokenizer,
               "max_tokens": cfg.max_tokens, "limit": cfg.limit}  # fmt: skip
        self.train_set: TrainingSet = training_set(self.out, key, clip, vocab, data, cfg.mode, cfg.max_tokens,
                                                   self._progress)  # fmt: skip
        self.steps_per_epoch = -(-len(self.train_set) // cfg.batch_size)
        self._init_optimiser()
        self.step, self.history = 0, []
        self._resume()

    def _progress(self, it, desc: str):
        from tqdm.auto import tqdm

        return tqdm(it, desc=desc, disable=not self.cfg.progress, dynamic_ncols=True)

    def _init_optimiser(self) -> None:
        from transformers import get_linear_schedule_with_warmup

        cfg, mapper = self.cfg, self.captioner.mapper
        self.optimizer = torch.optim.AdamW(
            mapper.parameters(), lr=cfg.lr, eps=1e-6, weight_decay=cfg.weight_decay
        )
        total = cfg.epochs * self.steps_per_epoch
        self.schedule = get_linear_schedule_with_warmup(
            self.optimizer, min(cfg.warmup, total), total
        )
        fp16 = self.captioner.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None

    # -- checkpoints -------------------------------------------------------------------

    def _checkpoint(self) -> Any:
        """The state file to resume from: the newest sound unit, else an older layout's lone
        ``checkpoint.pt``; ``None`` when there is none."""
        try:
            unit, _ = newest_unit(self.out / CHECKPOINTS, _warn, required=(CHECKPOINT,))
            return unit / CHECKPOINT
        except NoCheckpoint:
            legacy = self.out / CHECKPOINT  # saved before checkpoint units
            return legacy if legacy.is_file() else None

    def _resume(self) -> None:
        path = self._checkpoint() if self.cfg.resume else None
        if path is None:
            return
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            int(state["step"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem
            raise ConfigError(
                f"cannot read {path} ({short_error(exc)}); delete it or use resume=false"
            ) from None
        old, new = state.get("fixed", {}), self.cfg.fixed()
        changed = sorted(k for k in new if k in old and old[k] != new[k])
        if changed:
            diffs = ", ".join(f"{k}: {old[k]!r} → {new[k]!r}" for k in changed)
            raise ConfigError(
                f"{self.out} holds a run with other settings ({diffs}); use another out= or resume=false"
            )
        self.captioner.mapper.load_state_dict(state["mapper"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.history = int(state["step"]), list(state.get("history", []))
        print(f"resuming {self.out} at step {self.step}", file=sys.stderr)

    def save(self) -> None:
        """The checkpoint (a unit, also published as ``checkpoint.pt``) and the usable mapper."""
        state = {
            "step": self.step, "fixed": self.cfg.fixed(), "settings": asdict(self.cfg),
            "mapper": self.captioner.mapper.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "history": self.history,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }  # fmt: skip
        root = self.out / CHECKPOINTS
        for later, path in list_units(root):  # an earlier run's, which resume=false replaces
            if later > self.step:
                remove_unit(path)
        name = step_name(self.step)
        write_unit(root, name, {CHECKPOINT: lambda p: torch.save(state, os.fspath(p))},
                   {"step": self.step})  # fmt: skip
        publish_copy(root / name / CHECKPOINT, self.out / CHECKPOINT)
        prune_units(root, KEEP)
        extra = {"step": str(self.step), "clip": self.cfg.model, "lm": self.cfg.lm,
                 "tokenizer": str(self.cfg.tokenizer), "mode": self.cfg.mode}  # fmt: skip
        atomic_write(self.out / MAPPER, lambda tmp: save_mapper(self.captioner.mapper, tmp, extra))

    # -- the loop ----------------------------------------------------------------------

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        """The epoch's batches of caption indices: a permutation seeded by (seed, epoch)."""
        g = torch.Generator().manual_seed(int(self.cfg.seed) * 10_007 + epoch)
        order = torch.randperm(len(self.train_set), generator=g)
        return list(order.split(self.cfg.batch_size))

    def _train_step(self, idx: torch.Tensor, epoch: int) -> float:
        cfg, ts = self.cfg, self.train_set
        feats = ts.features[ts.rows[idx]].to(self.device).float()
        if cfg.mode == "capdec":
            g = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + self.step)
            feats = capdec_noise(feats, cfg.noise_variance, g)
        loss = batch_loss(self.captioner, feats, [ts.tokens[i] for i in idx.tolist()])
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.schedule.step()
        self.step += 1
        return float(loss.detach())

    def run(self) -> bool:
        """Train to the last epoch; True when a signal stopped it (a checkpoint was saved)."""
        from vlmrm.tune.report import Scalars

        cfg = self.cfg
        total = cfg.epochs * self.steps_per_epoch
        scalars = Scalars(self.out, cfg.tensorboard, purge_step=self.step or None)
        bar = self._progress(range(total), f"training {cfg.mode} mapper")
        bar.update(self.step)
        running: list[float] = []
        try:
            with GracefulStop() as stop:
                while self.step < total:
                    epoch, pos = divmod(self.step, self.steps_per_epoch)
                    for idx in self._batches(epoch)[pos:]:
                        running.append(self._train_step(idx, epoch))
                        bar.update(1)
                        if self.step % cfg.log_every == 0 or self.step == total:
                            mean = sum(running) / len(running)
                            self.history.append({"step": self.step, "loss": mean})
                            scalars.log(
                                {"loss": mean, "lr": self.schedule.get_last_lr()[0]},
                                self.step,
                                "train/",
                            )
                            bar.set_postfix_str(f"loss {mean:.4f}")
                            running = []
                        if stop:
                            self.save()
                            return True
                        if self.step % cfg.checkpoint_every == 0:
                            self.save()
                    self.save()  # every epoch's end
        finally:
            bar.close()
            scalars.close()
        return False

    def summary(self) -> dict[str, Any]:
        """``<out>/train.json``: settings, steps, loss history."""
        doc = {"step": self.step, "captions": len(self.train_set), "history": self.history,
               "settings": asdict(self.cfg), "mapper": os.fspath(self.out / MAPPER)}  # fmt: skip
        atomic_write_json(self.out / "train.json", json.loads(json.dumps(doc, default=str)))
        return doc
