"""Settings of ``python -m vlmrm.tune.finetune`` (torch-free: ``--help`` and bad values answer at once).

The CLIP and run keys mean what they mean in every command (:mod:`vlmrm.cli.vocabulary`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vlmrm.checks import TRAIN_PRECISIONS, check_choice, check_int
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError

STAGES = ("sft", "rl", "sft+rl")
TEMPERATURES = ("frozen", "learnable")
FINETUNE_LOCKS = ("none", "image", "text")
RESUME_MODES = ("auto", "true", "false")
#: Settings that may change when a run resumes (they do not change what is learned).
RESUMABLE_CHANGES = frozenset({"progress", "device", "resume", "checkpoint_every", "out", "wise_alpha"})


@dataclass
class FinetuneSettings(ClipSettings, RunSettings):
    """Every setting of ``python -m vlmrm.tune.finetune`` (``key=value`` on the command line)."""

    data: str = ""
    """Image–caption data (required): COCO captions JSON, Karpathy JSON, JSONL of
    {image, caption} rows, or a local Hugging Face dataset (folder, .parquet, .arrow)."""
    image_root: str = ""
    """Folder the image paths are relative to (default: the data file's folder)."""
    image_column: str = "image"
    """Hugging Face data: the image column."""
    text_column: str = "text"
    """Hugging Face data: the caption column (a string or a list of strings)."""
    model: str = "ViT-B-32/openai"
    """The CLIP to fine-tune: ARCH/TAG, ARCH (with pretrained=), or vlmrm-tiny."""
    precision: str = "auto"
    """Mixed precision (fp32 weights, autocast): auto, fp32, bf16, fp16 (CUDA), amp."""
    batch_size: int = 32
    """Image–caption pairs per step (the in-batch candidates of both losses)."""
    out: str = "runs/finetune"
    """Output folder: split.json, model.safetensors (best on val), model_wise.safetensors,
    metrics.json, checkpoints/ (to resume)."""
    stage: str = "sft"
    """sft (contrastive cross-entropy) | rl (REINFORCE, reward = correctness × confidence) |
    sft+rl (RL after the supervised stage)."""
    epochs: int = 5
    """Supervised epochs (validation after each; the best on val is kept)."""
    rl_epochs: int = 1
    """RL epochs (validation after each)."""
    lr: float = 1e-5
    """Supervised learning rate (AdamW)."""
    rl_lr: float = 1e-6
    """RL learning rate (AdamW)."""
    weight_decay: float = 0.1
    """AdamW weight decay (not on gains, biases and norms)."""
    temperature: str = "frozen"
    """frozen (τ = exp(logit_scale) as loaded) | learnable (logit_scale trains, capped at 100)."""
    lock: str = "none"
    """Freeze a tower: none | image | text."""
    num_samples: int = 4
    """RL: candidate captions (images) sampled per image (caption)."""
    wise_alpha: float | None = None
    """WiSE-FT: also save (1-α)·original + α·tuned weights as model_wise.safetensors (0 < α < 1)."""
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    """Train/val/test fractions of the images (seeded by seed=, saved as split.json)."""
    checkpoint_every: int = 500
    """Save a checkpoint every N steps (0: only at each epoch's end); one is also saved at
    every epoch's end and on Ctrl-C/SIGTERM. The same command continues from the newest."""
    resume: str = "auto"
    """auto (continue the run in out= when it holds a checkpoint) | true (require one) |
    false (start over)."""

    def validate(self) -> FinetuneSettings:
        """Check every setting without torch; each problem is one :class:`ConfigError` line."""
        self.check_clip(TRAIN_PRECISIONS)
        if not self.data:
            raise ConfigError("data=... is required: an image–caption dataset (COCO/Karpathy JSON, JSONL, HF)")
        check_choice("stage", self.stage, STAGES)
        check_choice("temperature", self.temperature, TEMPERATURES)
        check_choice("lock", self.lock, FINETUNE_LOCKS)
        self.epochs = check_int("epochs", self.epochs, 0)
        self.rl_epochs = check_int("rl_epochs", self.rl_epochs, 0)
        self.batch_size = check_int("batch_size", self.batch_size, 2)
        self.num_samples = check_int("num_samples", self.num_samples, 1)
        self.checkpoint_every = check_int("checkpoint_every", self.checkpoint_every, 0)
        self.resume = check_choice("resume", str(self.resume).lower(), RESUME_MODES)
        for name in ("lr", "rl_lr"):
            v = float(getattr(self, name))
            if not v > 0 or not math.isfinite(v):
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.wise_alpha is not None and not 0.0 < float(self.wise_alpha) < 1.0:
            raise ConfigError(f"wise_alpha must lie strictly between 0 and 1, got {self.wise_alpha}")
        fr = tuple(float(x) for x in self.split_fractions)
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"split_fractions must be three numbers >= 0 summing to 1, got {self.split_fractions}")
        self.split_fractions = list(fr)
        if self.model.startswith("hf-hub:"):
            raise ConfigError("fine-tuning an hf-hub: model is not supported; use model=ARCH/TAG")
        return self
