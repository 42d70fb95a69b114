"""The settings of ``python -m vlmrm.tta``: one dataclass, its field docstrings are ``--help``.

Torch-free: the argument layer builds and validates them (including the task's own
``*Settings``: :mod:`vlmrm.tta.classification.settings`, :mod:`vlmrm.tta.retrieval.settings`,
:mod:`vlmrm.tta.captioning.settings`) before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrm.checks import (
    TRAIN_PRECISIONS,
    check_choice,
    check_int,
    check_model_spec,
    check_optional_int,
    check_out_dir,
)
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError
from vlmrm.tta.captioning.settings import CaptionSettings
from vlmrm.tta.classification.settings import ClassifySettings
from vlmrm.tta.jobs.results import abspath
from vlmrm.tta.retrieval.settings import RetrieveSettings

TASKS = ("classify", "retrieve", "caption")
_DATA = {
    "classify": "a class-folder root",
    "retrieve": "a caption annotation JSON",
    "caption": "a Karpathy or NoCaps/COCO caption JSON",
}
#: K of image→text retrieval on COCO (the reference; Flickr30k keeps 16).
COCO_I2T_K = 20
#: The reference settings for CoOp's fine-grained sets (the ImageNet sets keep the defaults):
#: AugMix on the random views and 5 steps.
FINEGRAINED_PRESET = {"steps": 5, "augmix": True}
#: Methods run beside RLCF on the same views (classification).
BASELINES = ("none", "tpt")


@dataclass
class TTASettings(ClipSettings, RunSettings):
    """Command-line settings (``key=value``); ``None`` means the task's reference default."""

    model: str = "ViT-B-16/openai"
    """The CLIP that adapts (the policy): ARCH/TAG, ARCH with pretrained=, hf-hub:org/repo,
    or vlmrm-tiny."""
    pretrained: str | None = None
    """Weights of model= when it is a bare ARCH: an open_clip tag or a local weights file."""
    device: str = "auto"
    """auto (cuda when present, else cpu), cpu, cuda, cuda:N; under torchrun auto and cuda
    mean one GPU per local rank."""
    precision: str = "auto"
    """Mixed precision of the adaptation (fp32 weights, autocast): auto (amp on CUDA, fp32
    on CPU), fp32, amp (fp16 on CUDA, bf16 on CPU), bf16, fp16 (CUDA only)."""
    batch_size: int = 1
    """Test inputs (images, queries) adapted at once, each with independent weights: the same
    results, faster on a GPU (benchmarks/tta_latency.py measures when it pays)."""
    out: str | None = None
    """Output folder (default runs/tta/<task>-<mode|direction>-<data>)."""
    seed: int = 0
    """Seed of the random views (per sample: the same alone, batched or resumed)."""
    progress: bool = True
    """Show a progress bar."""
    task: str = "classify"
    """classify | retrieve | caption."""
    data: str | None = None
    """Class-folder root, CoOp split file split_zhou_<Dataset>.json, FGVCAircraft's data/ folder
    or CoOp's ImageNet folder (classify), caption annotation JSON (retrieve), Karpathy or
    NoCaps/COCO caption JSON (caption)."""
    images: str | None = None
    """Image folder of a retrieval or caption JSON or a CoOp dataset (default: the folder its
    archive unpacks to, beside the split file)."""
    caption_norm: str = "lavis"
    """retrieve: lavis (LAVIS's caption normalisation, as the reference) | none."""
    split: str = "test"
    """Split to evaluate: Karpathy test | val | train | all; CoOp datasets test | val | train."""
    classnames: str | None = None
    """Class-names file, or 'imagenet' (default: classnames.txt, wnids, folder names)."""
    reward_model: Any = "ViT-L-14/openai"
    """Reward CLIP, or a list [A,B] of them (same forms as model=)."""
    reward_pretrained: Any = None
    """Weights of a bare-ARCH reward_model (tag or local file); with several reward models a
    list aligned with reward_model, null where none is needed."""
    reward_weights: list[float] | None = None
    """One weight per reward model, e.g. [5,3]."""
    mode: str = "prompt"
    """classify: adapt the prompt context (prompt) or the image tower (image)."""
    direction: str = "i2t"
    """retrieve: i2t (adapts the image tower) | t2i (adapts the text tower)."""
    steps: int | None = None
    """REINFORCE steps per sample (default 3 classify, 8 retrieve, 4 caption)."""
    lr: float | None = None
    """AdamW learning rate (default 7e-3 prompt, 1e-5 image, 1e-6 retrieve, 2e-6 caption;
    the reference uses 3e-6 for NoCaps)."""
    weight_decay: float | None = None
    """AdamW weight decay (default 5e-4; 0 for caption)."""
    k: int | None = None
    """Answers sampled per step (default 3 classify, 16 i2t (20 on COCO), 12 t2i; caption: 10
    beams, the reference uses 6 for NoCaps)."""
    views: int = 64
    """classify: augmented views per image (centre crop + random crops)."""
    select: float = 0.1
    """classify: fraction of lowest-entropy views kept."""
    augmix: bool | None = None
    """classify: AugMix on the random views (default: on for the CoOp fine-grained sets, off otherwise)."""
    captioner: str | None = None
    """caption: the trained mapper (mapper.safetensors of python -m vlmrm.caption.train);
    model= must be the CLIP it was trained with."""
    lm: str = "facebook/opt-125m"
    """caption: the frozen causal LM (a transformers hub id in the cache, or a local folder)."""
    tokenizer: str | None = None
    """caption: the LM's vocabulary: null (the LM's own tokenizer) or clip (open_clip's
    bundled BPE, for LMs built over its 49408 ids)."""
    max_tokens: int = 30
    """caption: the longest caption generated, in LM tokens."""
    decoding: str = "beam"
    """caption: the k captions of a step by beam search with k beams (beam) or nucleus
    sampling (nucleus)."""
    top_p: float = 0.92
    """caption: nucleus sampling's top-p."""
    final_beams: int = 5
    """caption: beams of the final caption (lower-cased)."""
    metric_model: str = "ViT-B-32/openai"
    """caption: the CLIP of CLIPScore and RefCLIPScore (same forms as model=)."""
    metric_pretrained: str | None = None
    """caption: weights of a bare-ARCH metric_model."""
    meteor: bool = True
    """caption: compute METEOR (needs Java; skipped with a note when it is missing)."""
    sampling: str = "topk"
    """topk | sample (draw k answers from the policy's softmax)."""
    advantage: str = "mean"
    """mean (reward - mean over k) | std (also / std)."""
    n_ctx: int = 4
    """prompt mode: context tokens when ctx_init is empty."""
    ctx_init: str = "a photo of a"
    """prompt mode: initial context words, or a saved CoOp prompt learner
    (prompt_learner/model.pth.tar-50) whose learned context is the start."""
    template: str = "a photo of a {}."
    """Class prompt for the reward model (and the image mode classifier)."""
    params: str = "all"
    """Adapted tower weights: all | norm (only normalisation layers)."""
    reward_scale: float = 2.5
    """reward = reward_scale * max(cos, 0)."""
    ema: bool = False
    """Start each sample from a moving average of adapted weights (not episodic)."""
    ema_momentum: float = 0.9998
    """EMA momentum."""
    ema_every: int = 64
    """Move the start weights to the EMA every this many samples."""
    ema_weight: float = 1.0
    """start = (1 - w) * original + w * EMA."""
    limit: int | None = None
    """Only the first N samples."""
    shuffle: bool = False
    """Random sample order (seeded)."""
    resume: bool = True
    """Skip samples already in <out>/results.jsonl (false: start over)."""
    baseline: str = "none"
    """classify: none | tpt (also adapt each image by TPT, entropy minimisation over the same
    confident views, and report zero-shot / TPT / RLCF side by side)."""
    tpt_steps: int = 1
    """baseline=tpt: TPT steps per image (the TPT paper: 1)."""
    tpt_lr: float = 5e-3
    """baseline=tpt: TPT learning rate (the TPT paper: 5e-3, prompt mode)."""

    def validate(self) -> TTASettings:
        """Check every setting without torch; the method's settings are built once to check them."""
        self.task = check_choice("task", self.task, TASKS)
        if not self.data:
            raise ConfigError(f"data=<path> is required ({_DATA[self.task]} for task={self.task})")
        if self.task == "caption":
            self._check_caption()
        self.check_clip(TRAIN_PRECISIONS)
        if self.batch_size is None:
            raise ConfigError("batch_size must be an integer >= 1, got None")
        self.limit = check_optional_int("limit", self.limit, 1)
        if self.out:
            check_out_dir(self.out)
        self.reward_models()
        self.baseline = check_choice("baseline", self.baseline, BASELINES)
        from vlmrm.tta.retrieval.data import CAPTION_NORMS

        self.caption_norm = check_choice("caption_norm", self.caption_norm, CAPTION_NORMS)
        if self.baseline != "none" and self.task != "classify":
            raise ConfigError(f"baseline={self.baseline} is for task=classify; drop it for task={self.task}")
        method = self.method_settings()
        if self.baseline == "tpt":
            self.baseline_settings()
        if isinstance(method, RetrieveSettings):
            self.direction = method.direction  # image2text → i2t (it names the output folder)
        return self

    def _check_caption(self) -> None:
        """The captioning keys (no torch)."""
        if not self.captioner:
            raise ConfigError(
                "task=caption needs captioner=<mapper.safetensors>; train one with python -m vlmrm.caption.train"
            )
        self.tokenizer = None if self.tokenizer in (None, "", "null") else check_choice(
            "tokenizer", self.tokenizer, ("clip",)
        )
        self.max_tokens = check_int("max_tokens", self.max_tokens, 1)
        self.metric_model = check_model_spec(self.metric_model, self.metric_pretrained, name="metric_model")

    def reward_models(self) -> list[tuple[str, str | None]]:
        """``(spec, pretrained)`` of every reward model, from ``reward_model``/``reward_pretrained``."""
        return reward_specs(self.reward_model, self.reward_pretrained)

    def method_settings(self) -> ClassifySettings | RetrieveSettings | CaptionSettings:
        """The library settings of the task, validated (``None`` fields get the paper's defaults;
        a CoOp fine-grained set (split file or FGVCAircraft) gets the preset: 5 steps, AugMix)."""
        if self.task == "caption":
            defaults = CaptionSettings()
            return CaptionSettings(
                steps=defaults.steps if self.steps is None else self.steps,
                lr=defaults.lr if self.lr is None else self.lr,
                weight_decay=defaults.weight_decay if self.weight_decay is None else self.weight_decay,
                k=defaults.k if self.k is None else self.k, decoding=self.decoding, top_p=self.top_p,
                final_beams=self.final_beams, advantage=self.advantage, ema=self.ema,
                ema_momentum=self.ema_momentum, ema_every=self.ema_every, ema_weight=self.ema_weight,
            ).validated()  # fmt: skip
        weight_decay = 5e-4 if self.weight_decay is None else self.weight_decay
        if self.task == "classify":
            from vlmrm.datasets.coop import is_coop_split

            preset = FINEGRAINED_PRESET if is_coop_split(self.data) else {"steps": 3, "augmix": False}
            return ClassifySettings(
                mode=self.mode, steps=preset["steps"] if self.steps is None else self.steps, lr=self.lr,
                weight_decay=weight_decay, k=3 if self.k is None else self.k, views=self.views,
                select=self.select, augmix=preset["augmix"] if self.augmix is None else bool(self.augmix),
                sampling=self.sampling,
                advantage=self.advantage, n_ctx=self.n_ctx, ctx_init=self.ctx_init,
                template=self.template, image_params=self.params, ema=self.ema,
                ema_momentum=self.ema_momentum, ema_every=self.ema_every, ema_weight=self.ema_weight,
            ).validated()  # fmt: skip
        k = self.k
        if k is None and "coco" in Path(str(self.data)).name.lower() and self.direction in ("i2t", "image2text"):
            k = COCO_I2T_K  # the reference's COCO image→text setting
        return RetrieveSettings(
            direction=self.direction, steps=8 if self.steps is None else self.steps,
            lr=1e-6 if self.lr is None else self.lr, weight_decay=weight_decay, k=k,
            sampling=self.sampling, advantage=self.advantage, params=self.params, ema=self.ema,
            ema_momentum=self.ema_momentum, ema_every=self.ema_every, ema_weight=self.ema_weight,
        ).validated()  # fmt: skip

    def baseline_settings(self) -> ClassifySettings:
        """The TPT baseline's settings: the method's, with TPT's objective, steps and lr."""
        from dataclasses import replace

        base = self.method_settings()
        assert isinstance(base, ClassifySettings)
        return replace(base, objective="tpt", steps=self.tpt_steps, lr=self.tpt_lr).validated()

    def out_dir(self) -> Path:
        """``out``, or ``runs/tta/<task>-<mode|direction>-<data name>``."""
        if self.out:
            return Path(self.out).expanduser()
        name = Path(str(self.data).rstrip("/")).stem or "data"
        what = {"classify": self.mode, "retrieve": self.direction, "caption": self.decoding}[self.task]
        return Path("runs") / "tta" / f"{self.task}-{what}-{name}"

    def method(self, settings: ClassifySettings | RetrieveSettings | CaptionSettings) -> dict[str, Any]:
        """Everything that changes per-sample results (resuming with other values is refused)."""
        names = self.classnames
        method = {
            "task": self.task,
            "data": abspath(self.data),
            "images": abspath(self.images),
            "split": self.split if self.task in ("retrieve", "caption") or _coop_dataset(self.data) else None,
            "classnames": names if names in (None, "imagenet") else abspath(names),
            "model": self.model,
            "pretrained": self.pretrained,
            "reward_model": [list(m) for m in self.reward_models()],
            "reward_weights": self.reward_weights,
            "reward_scale": self.reward_scale,
            "seed": self.seed,
        }
        if self.task == "caption":
            method.update(captioner=abspath(self.captioner), lm=self.lm, tokenizer=self.tokenizer,
                          max_tokens=self.max_tokens)  # fmt: skip
        method.update(vars(settings))
        if self.task == "retrieve" and self.caption_norm != "none":
            method["caption_norm"] = self.caption_norm
        if self.baseline != "none":  # a key only when used: runs from before it still resume
            method["baseline"] = {"name": self.baseline, "steps": self.tpt_steps, "lr": self.tpt_lr}
        return method


def reward_specs(reward_model: Any, reward_pretrained: Any) -> list[tuple[str, str | None]]:
    """``(spec, pretrained)`` of every reward model: ``reward_model=A`` or ``[A,B]``, with
    ``reward_pretrained=`` one value or a list aligned with it (``null`` where none is needed)."""
    specs = _as_list(reward_model, "reward_model")
    if not specs or not all(isinstance(s, str) and s.strip() for s in specs):
        raise ConfigError(f"reward_model must name at least one model, got {reward_model!r}")
    weights = reward_pretrained
    if weights is None:
        weights = [None] * len(specs)
    elif isinstance(weights, str):
        if len(specs) != 1:
            raise ConfigError(
                f"reward_pretrained={weights!r} is one value for {len(specs)} reward models; give "
                "a list aligned with reward_model, e.g. reward_pretrained=[null,FILE]"
            )
        weights = [weights]
    else:
        weights = _as_list(weights, "reward_pretrained")
    if len(weights) != len(specs):
        raise ConfigError(
            f"reward_pretrained has {len(weights)} entries for {len(specs)} reward models; "
            "give one per reward model (null where none is needed)"
        )
    return [(check_model_spec(s, w, name="reward_model"), w or None) for s, w in zip(specs, weights, strict=True)]


def _as_list(value: Any, name: str) -> list:
    """``"A"``, ``"A,B"`` or ``["A", "B"]`` → a list."""
    if isinstance(value, str):
        return [s.strip() for s in value.split(",")]
    if isinstance(value, (list, tuple)):
        return [s.strip() if isinstance(s, str) else s for s in value]
    raise ConfigError(f"{name} must be one value or a list of them, got {value!r}")


def _coop_dataset(data: str | None) -> bool:
    """Whether ``data=`` is a CoOp dataset, whose ``split=`` picks the list evaluated."""
    from vlmrm.datasets.coop import is_coop_dataset

    return data is not None and is_coop_dataset(data)
