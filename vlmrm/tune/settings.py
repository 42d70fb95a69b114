"""Settings of the commands at the top of :mod:`vlmrm.tune` — ``python -m vlmrm.tune``
(:class:`TuneSettings`), ``python -m vlmrm.tune.build`` (:class:`BuildSettings`) and
``python -m vlmrm.tune.vsr_pairs`` (:class:`VSRPairsSettings`) — and the vocabulary of
tuning (loss names, pair modes, locks) that the data and the objectives check against.

Torch- and NumPy-free, so ``--help`` and bad settings answer at once; it imports nothing of
:mod:`vlmrm.tune`, and the data and objectives import their vocabulary from here.

The field docstrings are the ``--help`` text. The CLIP keys (``model``, ``pretrained``,
``device``, ``precision``, ``batch_size``) and the run keys (``out``, ``seed``,
``progress``) mean what they mean in every command (:mod:`vlmrm.cli.vocabulary`);
``precision`` takes :data:`vlmrm.checks.TRAIN_PRECISIONS` and always means mixed
precision here: the weights stay fp32, the forward pass autocasts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vlmrm.checks import (
    TRAIN_PRECISIONS,
    check_choice,
    check_int,
    check_integers,
    check_out_dir,
    integer,
)
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError

LOSSES = ("dpo", "ipo", "hinge", "bt", "listwise", "contrastive", "reinforce")
PAIRWISE = ("dpo", "ipo", "hinge", "bt")
LOCKS = ("none", "image", "text")
TRAIN_PARAMS = ("all", "attn_in_proj")
RESUME_MODES = ("auto", "true", "false")
PAIR_MODES = ("top", "all", "adjacent")
PAIR_WEIGHTINGS = ("none", "gap")
REINFORCE_REWARDS = ("correct", "rank", "confidence")
#: The hard-negative edits of :mod:`vlmrm.tune.data.augment` (``augment=`` of the build).
AUGMENTATIONS = ("flip", "color", "relation")
#: What a preference margin is measured in: ``scaled`` (τ·cos, our default) or raw
#: ``cosine`` (CLIP-PO's convention: their β ≈ 100·ours with CLIP's τ = 100).
MARGINS = ("scaled", "cosine")
#: Settings that may change between a run and its resumption.
RESUMABLE_CHANGES = frozenset(
    {
        "steps", "log_every", "eval_every", "checkpoint_every", "tensorboard", "device", "resume",
        "progress", "out", "vsr", "vsr_dev", "vsr_image_root", "probe", "probe_size",
    }
)


@dataclass
class TuneSettings(ClipSettings, RunSettings):
    """Every setting of ``python -m vlmrm.tune`` (``key=value`` on the command line)."""

    loss: str = "dpo"
    """dpo | ipo | hinge | bt | listwise | contrastive | reinforce."""
    data: str = ""
    """JSONL of ranked sets and/or pairs (required)."""
    eval_data: str = ""
    """Held-out JSONL; default: eval_fraction of data (by group)."""
    eval_fraction: float = 0.2
    """Fraction of the groups of data held out for evaluation when eval_data is not given."""
    image_root: str = ""
    """Folder image paths are relative to (default: each file's folder)."""
    vsr: str = ""
    """Optional VSR jsonl evaluated before/after."""
    vsr_dev: str = ""
    """Optional VSR dev jsonl: the cosine threshold is fitted on it (else the median)."""
    vsr_image_root: str = ""
    """Folder of the VSR images (default: the VSR file's folder)."""
    probe: str = ""
    """Optional {"image","caption"} jsonl; default: eval sets' best pairs."""
    probe_size: int = integer(64, minimum=2)
    """Image–caption pairs in the probe."""
    model: str = "ViT-B-32/openai"
    """The CLIP to tune: ARCH/TAG, ARCH (random weights, or with pretrained=), or vlmrm-tiny."""
    precision: str = "auto"
    """Mixed precision (fp32 weights, autocast): auto (amp on CUDA, fp32 on CPU), fp32 (off),
    bf16, fp16 (CUDA only), amp (fp16 on CUDA, bf16 on CPU)."""
    batch_size: int = 32
    """Training units (pairs, sets or image–caption positives) per optimisation step."""
    out: str = "runs/tune"
    """Output folder: model.safetensors, trainer_state.pt, config.yaml, metrics.json, tb/."""
    # objective
    beta: float = 0.1
    """β of DPO/IPO/hinge/listwise (the preference margin's scale)."""
    margin: str = "scaled"
    """scaled (margins in τ·cos, τ = 100 for CLIP: β = 0.1 here) | cosine (raw cosine
    margins as CLIP-PO scores them, so their β ≈ 10 carries over unchanged)."""
    label_smoothing: float = 0.0
    """DPO label smoothing ε in [0, 0.5]."""
    pairs: str = "top"
    """How rankings become pairs: top | all | adjacent."""
    pair_weighting: str = "none"
    """none | gap (weight a pair by its rank gap)."""
    num_samples: int = integer(4, minimum=1)
    """REINFORCE samples per anchor."""
    reinforce_reward: str = "correct"
    """REINFORCE reward: correct | rank | confidence."""
    kl_coef: float = 0.0
    """REINFORCE KL(π_θ ‖ π_ref) weight."""
    # what trains
    lock: str = "none"
    """Freeze a tower: none | image | text."""
    train_params: str = "all"
    """all | attn_in_proj (only the attention q/k/v in-projections)."""
    precompute_ref: bool = True
    """Compute the reference scores once before training instead of keeping a frozen copy."""
    # optimisation
    steps: int = integer(1000)
    """Optimisation steps (0: evaluate only)."""
    lr: float = 1e-5
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.1
    """AdamW weight decay (not on gains, biases and norms)."""
    warmup_steps: int = integer(0)
    """Linear warm-up steps before the cosine decay."""
    min_lr_ratio: float = 0.0
    """Learning rate at the end of the cosine decay, as a fraction of lr."""
    grad_clip: float = 1.0
    """Gradient norm clip (0: off)."""
    # bookkeeping
    log_every: int = integer(10)
    """Print a training line every this many steps (0: never)."""
    eval_every: int = integer(0)
    """Evaluate every this many steps (0: only before and after)."""
    checkpoint_every: int = integer(200)
    """Save a checkpoint every this many steps (0: only at the end)."""
    resume: str = "auto"
    """auto (resume when out holds a checkpoint) | true | false."""
    tensorboard: bool = True
    """Write TensorBoard logs to out/tb."""

    def validate(self) -> TuneSettings:
        """Check every setting (no torch imported); each problem is one :class:`ConfigError` line."""
        self.check_clip(TRAIN_PRECISIONS)
        for name, options in (
            ("loss", LOSSES), ("pairs", PAIR_MODES), ("pair_weighting", PAIR_WEIGHTINGS),
            ("reinforce_reward", REINFORCE_REWARDS), ("lock", LOCKS), ("margin", MARGINS), ("train_params", TRAIN_PARAMS),
        ):
            check_choice(name, getattr(self, name), options)
        self.resume = check_choice("resume", str(self.resume).lower(), RESUME_MODES)
        if not self.data:
            raise ConfigError("data=... is required: a JSONL of ranked sets or preference pairs")
        check_out_dir(self.out)
        if not self.beta > 0 or not math.isfinite(self.beta):
            raise ConfigError(f"beta must be a positive number, got {self.beta}")
        if not 0.0 <= self.label_smoothing <= 0.5:
            raise ConfigError(f"label_smoothing must lie in [0, 0.5], got {self.label_smoothing}")
        check_integers(self)
        self.batch_size = check_int("batch_size", self.batch_size, 2 if self.loss == "contrastive" else 1)
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.kl_coef < 0:
            raise ConfigError("weight_decay, grad_clip and kl_coef must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if self.model.startswith("hf-hub:"):
            raise ConfigError(
                "tuning an hf-hub: model is not supported (its checkpoint could not be reloaded by "
                "architecture name); use model=ARCH/TAG or model=ARCH pretrained=weights.safetensors"
            )
        return self


def model_arch(spec: str) -> str:
    """The architecture name a checkpoint of ``spec`` reloads with."""
    return spec.strip().partition("/")[0]


def upgrade_saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """Settings saved by a run from before the shared vocabulary, in today's keys.

    ``amp`` became ``precision`` (``off`` → ``fp32``), the REINFORCE ``reward`` became
    ``reinforce_reward``, ``quiet`` became ``progress`` (inverted) and an empty
    ``pretrained`` became ``None``; so resuming such a run compares like with like.
    """
    new = dict(saved)
    if "amp" in new:
        amp = new.pop("amp")
        new.setdefault("precision", "fp32" if amp == "off" else amp)
    if "reward" in new:
        new.setdefault("reinforce_reward", new.pop("reward"))
    if "quiet" in new:
        new.setdefault("progress", not new.pop("quiet"))
    if new.get("pretrained") == "":
        new["pretrained"] = None
    return new


@dataclass
class BuildSettings(ClipSettings):
    """Every setting of ``python -m vlmrm.tune.build``."""

    captions: str = ""
    """JSONL of {"image", "caption"} rows (required)."""
    out: str = ""
    """Output folder (required): ranked.jsonl and images/."""
    image_root: str = ""
    """Folder image paths are relative to (default: the captions file's folder)."""
    model: str = "ViT-B-32/openai"
    """Reward CLIP for retrieval (ARCH/TAG, ARCH with pretrained=, vlmrm-tiny); none to skip retrieval."""
    precision: str = "fp32"
    """Precision of the retrieval CLIP (see --help of any command); fp32 keeps the cosine
    threshold on the reference scale."""
    threshold: float = 0.25
    """Image–caption cosine for a retrieved negative."""
    max_retrieved: int = 3
    """Retrieved negatives per image at most."""
    max_text_similarity: float = 0.95
    """Text–text cosine above which a retrieved caption counts as a paraphrase (never a negative)."""
    augment: str = "flip,color,relation"
    """Comma list of flip, color, relation."""
    threads: Any = "auto"
    """CPU threads of torch: auto (half the cores) or N; printed once when the command starts."""

    def validate(self) -> BuildSettings:
        """Check the settings without torch; each problem is one ConfigError line."""
        if not self.captions or not self.out:
            raise ConfigError("captions=... and out=... are required")
        check_out_dir(self.out)
        if self.retrieval:
            self.check_clip()
        self.max_retrieved = check_int("max_retrieved", self.max_retrieved, 0)
        bad = [a for a in self.augmentations if a not in AUGMENTATIONS]
        if bad:
            raise ConfigError(f"unknown augmentation(s) {bad}; choose from {AUGMENTATIONS}")
        return self

    @property
    def retrieval(self) -> bool:
        """Whether a reward CLIP retrieves negatives (``model=none`` turns it off)."""
        return self.model.strip().lower() not in ("", "none")

    @property
    def augmentations(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.augment.split(",") if a.strip())


@dataclass
class VSRPairsSettings:
    """Settings of ``python -m vlmrm.tune.vsr_pairs``."""

    vsr: str = ""
    """VSR jsonl to read (image, caption, relation, label), e.g. the train split (required)."""
    image_root: str = ""
    """Folder of the VSR images (default: the VSR file's folder); written relative to out's folder."""
    out: str = ""
    """Output JSONL of ranked sets (required)."""
    false_rows: bool = True
    """Also use false rows (their relation-swapped twin is preferred); false: true rows only."""
    check_files: bool = True
    """Check that every image exists."""

    def validate(self) -> VSRPairsSettings:
        if not self.vsr:
            raise ConfigError("vsr=<VSR jsonl> is required, e.g. vsr=vsr/random/train.jsonl")
        if not self.out:
            raise ConfigError("out=<pairs.jsonl> is required")
        return self


#: The names these classes had before every settings class ended in ``Settings``.
TuneConfig = TuneSettings
BuildConfig = BuildSettings
