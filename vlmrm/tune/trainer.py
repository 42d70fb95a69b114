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

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrm.errors import ConfigError
from vlmrm.models import load_clip, resolve_device, training_precision
from vlmrm.runtime.atomic import atomic_write_text
from vlmrm.runtime.lazy import moved_attributes
from vlmrm.runtime.stop import GracefulStop
from vlmrm.tune.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from vlmrm.tune.data.images import ImageCache
from vlmrm.tune.data.records import Item
from vlmrm.tune.eval.metrics import (
    cosine_scores,
    evaluate_model,
    listwise_top1,
    pairwise_accuracy,
    set_scores,
)
from vlmrm.tune.objectives import losses as L
from vlmrm.tune.objectives.objective import Objective, eval_loss
from vlmrm.tune.objectives.scorer import (
    ItemScorer,
    batches,
    cosine_schedule,
    param_groups,
    select_parameters,
)
from vlmrm.tune.report import Scalars, TuneResult, fmt, write_metrics
from vlmrm.tune.run_data import load_run_data
from vlmrm.tune.settings import PAIRWISE, TuneSettings, model_arch

__all__ = ["MODEL_FILE", "STATE_FILE", "Trainer", "TuneSettings", "TuneResult", "select_parameters", "train"]

#: The settings' old name, which this module used to re-export.
__getattr__, __dir__ = moved_attributes(__name__, {"vlmrm.tune.settings": ("TuneConfig",)})


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Trainer:
    """One tuning run; :func:`train` is the usual entry point."""

    def __init__(self, cfg: TuneSettings, callback: Callable[[int, dict[str, float]], None] | None = None):
        self.cfg = cfg.validate()
        self.callback = callback
        self.out = Path(cfg.out)
        # progress=false drops the per-step lines only: what was set up, evaluated, stopped and
        # saved is always said (a quiet run that prints nothing looks hung)
        self.tell = lambda *a: print(*a, flush=True)
        self.say = self.tell if cfg.progress else (lambda *a: None)
        self.images = ImageCache()
        self.step = 0
        self.losses: list[tuple[int, float]] = []
        self.history: list[dict[str, Any]] = []
        self.before: dict[str, Any] = {}
        self.ref_table: dict[Item, float] = {}
        self._eval_ref: dict[Item, float] | None = None
        self.ref_scorer: ItemScorer | None = None

    # ----------------------------------------------------------------- setup
    def _load_clip(self):
        cfg = self.cfg
        device = resolve_device(cfg.device)
        # fast_resize off: the frames are resized as the fp32 reference implementation does
        return load_clip(
            cfg.model, device=device, **training_precision(cfg.precision, device),
            pretrained=cfg.pretrained or None, fast_resize=False,
        )

    def _build_model(self) -> None:
        cfg = self.cfg
        self.clip = self._load_clip()
        self.device = self.clip.device
        self.clip.model.eval()
        self.tau = L.frozen_temperature(self.clip.model.logit_scale).to(self.device)
        self.trainable = select_parameters(self.clip.model, cfg.lock, cfg.train_params)
        self.scorer = ItemScorer(self.clip, self.images, self.tau, lock=cfg.lock)
        self.objective = Objective(cfg, self.scorer, self._ref_scores)
        self.optimizer = torch.optim.AdamW(param_groups(self.trainable, cfg.weight_decay), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_schedule(cfg.warmup_steps, max(cfg.steps, 1), cfg.min_lr_ratio)
        )
        # fp16 autocast (mixed precision on CUDA) needs loss scaling; bf16 does not
        fp16 = self.clip.autocast_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def _init_reference(self) -> None:
        """Reference scores from the model as loaded (call before any update)."""
        cfg = self.cfg
        if cfg.loss == "contrastive" or cfg.loss == "bt" or (cfg.loss == "reinforce" and cfg.kl_coef == 0):
            return
        if not cfg.precompute_ref:
            ref = self._load_clip()
            ref.model.eval().requires_grad_(False)
            self.ref_scorer = ItemScorer(ref, self.images, self.tau, lock="none")
            return
        if not self.ref_table:
            items = self.data.all_items()
            self.say(f"precomputing reference scores for {len(items)} image–caption items")
            # The training forward pass itself (same preprocessing, same autocast), so
            # h is exactly 0 at step 0 whatever the precision.
            with torch.no_grad():
                chunks = [self.scorer.scores(items[k : k + 256]).cpu() for k in range(0, len(items), 256)]
            self.ref_table = dict(zip(items, torch.cat(chunks).tolist(), strict=True))

    def _ref_scores(self, items: Sequence[Item]) -> torch.Tensor:
        if self.ref_scorer is not None:
            with torch.no_grad():
                return self.ref_scorer.scores(items).detach()
        return torch.tensor([self.ref_table[it] for it in items], dtype=torch.float32, device=self.device)

    # ----------------------------------------------------------------- checkpoints
    @property
    def model_path(self) -> Path:
        return self.out / MODEL_FILE

    def save_checkpoint(self) -> Path:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ref_table": self.ref_table,
            "losses": self.losses,
            "history": self.history,
            "before": self.before,
        }
        return save_checkpoint(self.out, self.clip.model, self.cfg, self.step, state)

    def _maybe_resume(self) -> bool:
        cfg = self.cfg
        state = load_checkpoint(cfg, self.out)
        if state is None:
            return False
        load_weights(self.clip.model, state["weights"], self.device)
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
        self.tell(f"resumed from {self.out} at step {self.step}")
        return True

    # ----------------------------------------------------------------- one step
    def _train_step(self, units: list[Any]) -> dict[str, float]:
        loss, stats = self.objective.loss(units, self.step)
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
        sets = self.data.eval_sets
        if sets:
            self.clip.clear_text_cache()
            cos = set_scores(self.clip, sets, self.images)
            m.update({f"pref/{k}": v for k, v in pairwise_accuracy(sets, cos).items()})
            m["pref/top1"] = listwise_top1(sets, cos)
            if self.cfg.loss in (*PAIRWISE, "listwise"):
                ref = self._eval_reference() if self.cfg.loss != "bt" else {}
                m["loss"] = eval_loss(self.cfg, sets, cos, float(self.tau), ref)
        m.update(evaluate_model(self.clip, (), vsr=self.data.vsr, probe=self.data.probe,
                                images=self.images, vsr_dev=self.data.vsr_dev))  # fmt: skip
        return m

    def _eval_reference(self) -> dict[Item, float]:
        if self.ref_table:
            return self.ref_table
        if self._eval_ref is None:
            assert self.ref_scorer is not None
            items = list(dict.fromkeys(it for s in self.data.eval_sets for it in s.items()))
            ref = cosine_scores(self.ref_scorer.clip, items, self.images) * float(self.tau)
            self._eval_ref = dict(zip(items, ref.tolist(), strict=True))
        return self._eval_ref

    def _evaluate_and_log(self, scalars: Scalars, label: str) -> dict[str, Any]:
        m = self.evaluate()
        self.history.append({"step": self.step, **m})
        scalars.log(m, self.step, "eval/")
        self.tell(f"{label}: " + fmt(m))
        return m

    # ----------------------------------------------------------------- loop
    def _setup(self) -> bool:
        """Seed, load data and model, resume if asked, prepare the reference; True if resumed."""
        cfg = self.cfg
        _seed_everything(cfg.seed)
        self.data = load_run_data(cfg)
        self._build_model()
        resumed = self._maybe_resume()
        self._init_reference()
        from omegaconf import OmegaConf

        atomic_write_text(self.out / "config.yaml", OmegaConf.to_yaml(asdict(cfg)))
        n_train = sum(p.numel() for _, p in self.trainable)
        d = self.data
        self.tell(
            f"tuning {cfg.model} with loss={cfg.loss}: {len(d.train_sets)} train / {len(d.eval_sets)} eval sets, "
            f"{len(d.units)} training units, {n_train:,} trainable parameters, device {self.device}"
        )
        return resumed

    def _loop(self, stop: GracefulStop, scalars: Scalars) -> bool:
        """Train until ``steps``; returns True when a stop signal cut the run short."""
        cfg = self.cfg
        t0, last_log = time.perf_counter(), self.step
        order = batches(len(self.data.units), cfg.batch_size, cfg.seed, self.step)
        while self.step < cfg.steps:
            _, idx = next(order)
            stats = self._train_step([self.data.units[i] for i in idx])
            self.step += 1
            self.losses.append((self.step, stats["loss"]))
            stats["lr"] = self.scheduler.get_last_lr()[0]
            scalars.log(stats, self.step, "train/")
            if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                rate = (self.step - last_log) / max(time.perf_counter() - t0, 1e-9)
                t0, last_log = time.perf_counter(), self.step
                self.say(f"step {self.step}/{cfg.steps} " + fmt(stats) + f" ({rate:.2f} steps/s)")
            if self.callback is not None:
                self.callback(self.step, stats)
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self._evaluate_and_log(scalars, f"eval @ {self.step}")
            if stop:
                return True
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        return False

    def _write_metrics(self, after: dict[str, Any], interrupted: bool) -> None:
        write_metrics(self.out, {
            "step": self.step,
            "interrupted": interrupted,
            "arch": model_arch(self.cfg.model),
            "checkpoint": str(self.model_path) if self.model_path.is_file() else None,
            "before": self.before,
            "after": after,
            "history": self.history,
        })

    def run(self) -> TuneResult:
        """Train, evaluating before and after; SIGINT/SIGTERM save a checkpoint and return."""
        cfg = self.cfg
        resumed = self._setup()
        scalars = Scalars(self.out, cfg.tensorboard, purge_step=self.step if resumed else None)
        try:
            if not resumed or not self.before:
                self.before = self.evaluate()
                scalars.log(self.before, self.step, "eval/")
                self.tell("before: " + fmt(self.before))
            with GracefulStop() as stop:
                interrupted = self._loop(stop, scalars)
                # still inside the handler: a Ctrl-C now cannot cut the final save in half
                checkpoint = self.save_checkpoint() if cfg.steps > 0 or resumed else None
            if interrupted:
                after: dict[str, Any] = {}
                self.tell(
                    f"stopped by signal at step {self.step}; checkpoint saved to {self.out} — "
                    "run the same command again to resume"
                )
            elif cfg.steps == 0:
                after = dict(self.before)
            else:
                after = self._evaluate_and_log(scalars, "after")
            self._write_metrics(after, interrupted)
        finally:
            scalars.close()
        result = TuneResult(
            out_dir=self.out, checkpoint=checkpoint, arch=model_arch(cfg.model), step=self.step,
            interrupted=interrupted, before=self.before, after=after, losses=list(self.losses),
        )
        if checkpoint is not None and not interrupted:
            self.tell(f"saved {checkpoint}; load it with {result.load_hint}")
        return result


def train(
    cfg: TuneSettings | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    **overrides: Any,
) -> TuneResult:
    """Run preference tuning; ``overrides`` set :class:`TuneSettings` fields.

    ``callback(step, stats)`` is called after every optimisation step (for tests and
    notebooks). Returns a :class:`TuneResult` with the checkpoint path and metrics.
    """
    cfg = TuneSettings() if cfg is None else cfg
    known = set(TuneSettings.__dataclass_fields__)
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown setting(s) {bad}; known: {sorted(known)}")
    if overrides:
        cfg = TuneSettings(**{**asdict(cfg), **overrides})
    return Trainer(cfg, callback).run()
