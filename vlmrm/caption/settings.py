"""The settings of the captioning commands, in one place and torch-free (``--help`` and checks
are instant): :class:`CaptionTrainSettings` (``python -m vlmrm.caption.train``) and
:class:`RerankSettings` (``python -m vlmrm.caption.rerank``). RLCF captioning at test time is
``python -m vlmrm.tta task=caption`` (:mod:`vlmrm.tta.captioning.settings`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlmrm.checks import (
    TRAIN_PRECISIONS,
    check_choice,
    check_int,
    check_integers,
    check_model_spec,
    check_optional_int,
    integer,
)
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError

MODES = ("clipcap", "capdec")
#: Settings that may change when a run resumes (they do not change what was learned so far).
RESUMABLE = (
    "epochs",
    "checkpoint_every",
    "log_every",
    "tensorboard",
    "progress",
    "device",
    "resume",
    "out",
)


@dataclass
class CaptionTrainSettings(ClipSettings, RunSettings):
    """Training of a captioner's mapping network; the defaults are the reference's."""

    model: str = "ViT-B-16/openai"
    """The frozen CLIP whose embeddings the mapper reads (RLCF's policy CLIP)."""
    precision: str = "auto"
    """Mixed precision: auto (amp on CUDA, fp32 on CPU), fp32, amp, bf16, fp16 (CUDA)."""
    batch_size: int = 40
    """Captions per optimiser step."""
    out: str | None = None
    """Output folder (default runs/caption/<mode>-<data>): mapper.safetensors, checkpoints/ (the
    newest also as checkpoint.pt), features.pt (the CLIP features, computed once), tb/
    (TensorBoard)."""
    data: str | None = None
    """Karpathy-style caption JSON (dataset_coco.json), or a COCO captions JSON."""
    images: str | None = None
    """Image folder (default: the JSON's folder); not needed for mode=capdec."""
    split: str = "train"
    """Karpathy split to train on: train (with restval) | val | test | all."""
    mode: str = "clipcap"
    """clipcap: train on image embeddings; capdec: on caption text embeddings with Gaussian
    noise, re-normalised (text-only training, no images needed)."""
    noise_variance: float = 0.016
    """capdec: variance of the noise added to the text embeddings."""
    lm: str = "facebook/opt-125m"
    """The frozen causal LM (a transformers hub id in the cache, or a local folder)."""
    tokenizer: str | None = None
    """null (the LM's own tokenizer) or clip (open_clip's bundled BPE)."""
    prefix_length: int = integer(40, minimum=1)
    """Prefix tokens the mapper gives the LM."""
    mapper_layers: int = integer(8, minimum=1)
    """Transformer layers of the mapper."""
    mapper_heads: int = integer(8, minimum=1)
    """Attention heads of the mapper (must divide the LM's width)."""
    mlp_ratio: float = 2.0
    """MLP width of the mapper's layers, as a multiple of the LM's width."""
    max_tokens: int = integer(30, minimum=1)
    """Captions are cut at this many LM tokens."""
    epochs: int = integer(10, minimum=1)
    """Passes over the captions."""
    lr: float = 2e-5
    """AdamW learning rate (eps 1e-6)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup: int = integer(5000)
    """Linear warm-up steps, then linear decay to 0 at the end."""
    limit: int | None = None
    """Only the first N images (smoke runs)."""
    log_every: int = integer(50, minimum=1)
    """Steps between TensorBoard / progress-bar loss updates."""
    checkpoint_every: int = integer(1000, minimum=1)
    """Steps between checkpoints (also at every epoch's end and on Ctrl-C)."""
    tensorboard: bool = True
    """Write TensorBoard scalars to <out>/tb."""
    resume: bool = True
    """Continue from the newest sound checkpoint in <out>/checkpoints/ (or an older run's lone
    <out>/checkpoint.pt) when there is one (false: start over)."""

    def validate(self) -> CaptionTrainSettings:
        """Check every setting without torch."""
        if not self.data:
            raise ConfigError(
                "data=<caption JSON> is required (Karpathy dataset_coco.json or a COCO captions file)"
            )
        self.check_clip(TRAIN_PRECISIONS)
        self.mode = check_choice("mode", self.mode, MODES)
        self.split = check_choice("split", self.split, ("train", "val", "test", "all"))
        if self.tokenizer in ("", "null"):
            self.tokenizer = None
        if self.tokenizer is not None:
            self.tokenizer = check_choice("tokenizer", self.tokenizer, ("clip",))
        check_integers(self)
        self.batch_size = check_int("batch_size", self.batch_size, 1)
        self.limit = check_optional_int("limit", self.limit, 1)
        for name in ("lr", "noise_variance", "mlp_ratio"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if float(self.weight_decay) < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        return self

    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out).expanduser()
        return Path("runs") / "caption" / f"{self.mode}-{Path(str(self.data)).stem}"

    def fixed(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE}


@dataclass
class RerankSettings(ClipSettings, RunSettings):
    """Caption-and-rerank settings."""

    model: str = "ViT-B-16/openai"
    """The CLIP of captioner= (the one its mapper was trained with)."""
    out: str = "runs/caption/rerank"
    """Output folder."""
    data: str | None = None
    """Karpathy or NoCaps/COCO caption JSON (its references give the metrics)."""
    images: str | None = None
    """Image folder (default: the JSON's folder)."""
    split: str = "test"
    """Karpathy split: test | val | train | all."""
    limit: int | None = None
    """Only the first N images."""
    captioner: str | None = None
    """Our captioner's mapper (mapper.safetensors); or give hf_model=."""
    hf_model: str | None = None
    """A transformers image-to-text model (e.g. Salesforce/blip-image-captioning-base) from the
    Hugging Face cache, or a local folder."""
    lm: str = "facebook/opt-125m"
    """captioner=: the frozen causal LM."""
    tokenizer: str | None = None
    """captioner=: null (the LM's own) or clip (open_clip's BPE)."""
    max_tokens: int = integer(30, minimum=1)
    """The longest caption, in LM tokens."""
    n: int = integer(5, minimum=1)
    """Candidates per image (n-beam search, all beams)."""
    reward_model: Any = "ViT-L-14/openai"
    """Reward CLIP, or a list [A,B] (a preference-tuned one: ARCH with reward_pretrained=)."""
    reward_pretrained: Any = None
    """Weights of bare-ARCH reward models (a list aligned with reward_model)."""
    reward_weights: list[float] | None = None
    """One weight per reward model."""
    meteor: bool = True
    """Compute METEOR (needs Java)."""

    def validate(self) -> RerankSettings:
        from vlmrm.tta.settings import reward_specs

        if not self.data:
            raise ConfigError("data=<caption JSON> is required")
        if bool(self.captioner) == bool(self.hf_model):
            raise ConfigError(
                "give one captioner: captioner=<mapper.safetensors> or hf_model=<transformers model>"
            )
        self.check_clip()
        check_integers(self)
        self.limit = check_optional_int("limit", self.limit, 1)
        if self.tokenizer in ("", "null"):
            self.tokenizer = None
        if self.captioner:
            self.model = check_model_spec(self.model, self.pretrained)
        reward_specs(self.reward_model, self.reward_pretrained)
        return self
