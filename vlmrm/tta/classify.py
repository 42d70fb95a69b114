"""RLCF test-time adaptation for zero-shot image classification.

Per test image (or per image of a batch, independently):

1. make 64 views (centre crop + 63 random resized crops with flips, :mod:`vlmrm.tta.views`);
2. policy logits on all views; keep the 10% with the lowest entropy (chosen once);
3. the reward CLIPs embed those views once; the reward of class ``c`` for a view is
   ``2.5·max(cos(view, "a photo of a {c}."), 0)``;
4. ``steps`` times: take the top-K classes of every kept view, advantage = reward − mean
   over the K, REINFORCE loss (:func:`vlmrm.tta.rlcf.reinforce_loss`), one AdamW step;
5. predict with the adapted weights on the centre crop; start the next image afresh.

What is adapted (``mode``): ``"prompt"`` — 4 context token vectors of a CoOp prompt
learner (:class:`vlmrm.tta.prompt.PromptLearner`; lr 7e-3), the image features stay
frozen; or ``"image"`` — the image tower (lr 1e-5; ``image_params="norm"`` for only its
norm layers), the class embeddings stay frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel, check_prompts
from vlmrm.tta.base import (
    RLCFAdapter,
    check_k,
    check_policy_precision,
    check_rlcf_settings,
    resolve_settings,
)
from vlmrm.tta.feedback import CLIPFeedback
from vlmrm.tta.params import call_stacked, stack_params, trainable_params
from vlmrm.tta.prompt import PromptLearner
from vlmrm.tta.rlcf import (
    check_fraction,
    reinforce_loss,
    sample_answers,
    select_confident,
)
from vlmrm.tta.views import make_views

MODES = ("prompt", "image")
DEFAULT_LR = {"prompt": 7e-3, "image": 1e-5}


@dataclass
class ClassifySettings:
    """RLCF classification settings; the defaults are the paper's (ViT-B/16 policy)."""

    mode: str = "prompt"
    steps: int = 3
    lr: float | None = None  # 7e-3 (prompt) / 1e-5 (image)
    weight_decay: float = 5e-4
    k: int = 3
    views: int = 64
    select: float = 0.1
    augmix: bool = False
    sampling: str = "topk"
    advantage: str = "mean"
    n_ctx: int = 4
    ctx_init: str = "a photo of a"
    template: str = "a photo of a {}."
    image_params: str = "all"
    amp: bool = True
    ema: bool = False
    ema_momentum: float = 0.9998
    ema_every: int = 64
    ema_weight: float = 1.0

    def validated(self) -> ClassifySettings:
        """A copy with ``lr`` filled in; raises :class:`ConfigError` on a bad value."""
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        check_rlcf_settings(self, "image_params")
        check_k(self.k)
        if int(self.views) < 1:
            raise ConfigError(f"views must be >= 1, got {self.views}")
        check_fraction(self.select, "select")
        if "{}" not in self.template:
            raise ConfigError(
                f"template must contain '{{}}' for the class name, got {self.template!r}"
            )
        lr = DEFAULT_LR[self.mode] if self.lr is None else float(self.lr)
        if not lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if float(self.weight_decay) < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        return replace(self, lr=lr)


@dataclass
class ClassifyResult:
    """One test image's outcome: logits before and after adaptation, and diagnostics."""

    logits: torch.Tensor
    zeroshot_logits: torch.Tensor
    rewards: list[float] = field(
        default_factory=list
    )  # mean reward of the sampled classes per step
    selected: list[int] = field(default_factory=list)  # indices of the confident views

    @property
    def pred(self) -> int:
        return int(self.logits.argmax())

    @property
    def zeroshot_pred(self) -> int:
        return int(self.zeroshot_logits.argmax())

    def topk(self, k: int = 5, zeroshot: bool = False) -> list[int]:
        z = self.zeroshot_logits if zeroshot else self.logits
        return z.topk(min(k, z.numel())).indices.tolist()


class ClassificationTTA(RLCFAdapter):
    """Adapt a policy CLIP to each test image with feedback from reward CLIPs (RLCF).

    Args:
        policy: the CLIP being adapted (loaded in fp32, or ``precision="amp"`` on CUDA).
        feedback: the reward CLIPs (:class:`CLIPFeedback`).
        classnames: candidate class names.
        settings: :class:`ClassifySettings`; keyword arguments override its fields.

    The loaded policy is never modified: adapted weights are per-sample copies (see
    :mod:`vlmrm.tta.params`), so every call starts from the same weights unless EMA is on.
    """

    def __init__(
        self,
        policy: ClipModel,
        feedback: CLIPFeedback,
        classnames: Sequence[str],
        settings: ClassifySettings | None = None,
        **overrides,
    ) -> None:
        self.settings = resolve_settings(ClassifySettings, settings, overrides, "classification")
        s = self.settings
        self.classnames = check_prompts(list(classnames), "class names")
        if len(self.classnames) < 2:
            raise ConfigError("classification needs at least 2 classes")
        if s.k > len(self.classnames):
            raise ConfigError(
                f"k={s.k} is larger than the number of classes ({len(self.classnames)})"
            )
        check_policy_precision(policy)
        self._init_models(policy, feedback)
        self.view_size = max(policy.image_size, feedback.image_size)
        prompts = [s.template.format(c.replace("_", " ")) for c in self.classnames]
        self.reward_text = feedback.embed_texts(prompts)
        if s.mode == "prompt":
            self.learner = PromptLearner(
                policy, self.classnames, n_ctx=s.n_ctx, ctx_init=s.ctx_init
            )
            start = {"ctx": self.learner.init_ctx}
            self.class_embeddings = None
        else:
            self.learner = None
            start = trainable_params(policy.model.visual, s.image_params)
            self.class_embeddings = policy.embed_texts(prompts).clone()
        self._init_state(start)

    # -- internals -------------------------------------------------------------------
    def _image_features(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Adapted image tower on preprocessed views ``(B, N, 3, S, S)`` → unit ``(B, N, D)``."""
        emb = call_stacked(self.policy.model.visual, params, x)
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def _logits(self, params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """Policy logits ``(B, N, C)``; ``inputs`` are frozen image features (prompt mode) or pixels."""
        with self._autocast():
            if self.learner is not None:
                img = inputs
                txt = self.learner(params["ctx"])  # (B, C, D)
            else:
                img = self._image_features(params, inputs)
                txt = self.class_embeddings.unsqueeze(0).expand(img.shape[0], -1, -1)
            return self.logit_scale * torch.einsum("bnd,bcd->bnc", img.float(), txt.float())

    # -- public ----------------------------------------------------------------------
    def adapt(self, image, seed: int = 0) -> ClassifyResult:
        """Adapt to one image ``(H, W, 3)`` uint8 and classify it; see the module docstring."""
        return self.adapt_batch([image], [seed])[0]

    def adapt_batch(
        self, images: Sequence, seeds: Sequence[int] | None = None
    ) -> list[ClassifyResult]:
        """Adapt to several images at once, each with its own independent weights.

        Gives the same results as calling :meth:`adapt` on each image with the same seed
        (up to float rounding), faster on a GPU. ``seeds`` fix each image's random views.
        """
        s = self.settings
        images = list(images)
        if not images:
            return []
        seeds = list(range(len(images))) if seeds is None else [int(x) for x in seeds]
        if len(seeds) != len(images):
            raise ConfigError(f"got {len(seeds)} seeds for {len(images)} images")
        b = len(images)
        gens = [torch.Generator().manual_seed(sd) for sd in seeds]
        views = torch.stack(
            [
                make_views(img, s.views, self.view_size, g, device=self.device, augmix=s.augmix)
                for img, g in zip(images, gens, strict=True)
            ]
        )  # (B, V, 3, S, S) float in [0, 1]
        n_views = views.shape[1]
        x = self.policy.preprocess(views.reshape(b * n_views, *views.shape[2:]))
        x = x.reshape(b, n_views, *x.shape[1:])
        params = stack_params(self.state.start, b)
        optimizer = torch.optim.AdamW(list(params.values()), lr=s.lr, weight_decay=s.weight_decay)

        rows = torch.arange(b, device=self.device).unsqueeze(1)
        if self.learner is not None:
            flat = x.reshape(b * n_views, *x.shape[2:])
            chunk = self.policy.batch_size
            feats = torch.cat(
                [
                    self.policy.encode_preprocessed(flat[i : i + chunk])
                    for i in range(0, flat.shape[0], chunk)
                ]
            ).reshape(b, n_views, -1)
            feats = feats.clone()  # frozen image features (out of inference mode)
            logits_all = self._logits(params, feats)
            sel = select_confident(logits_all, s.select)  # (B, n)
            logits = logits_all[rows, sel]
            inputs_sel, inputs_centre = feats[rows, sel], feats[:, :1]
        else:
            with torch.no_grad():
                logits_all = self._logits(params, x)
            sel = select_confident(logits_all, s.select)
            inputs_sel, inputs_centre = x[rows, sel], x[:, :1]
            logits = None
        zeroshot = logits_all[:, 0].detach().float()

        chosen = views[rows, sel]  # (B, n, 3, S, S)
        n_sel = chosen.shape[1]
        rimg = self.feedback.embed_images(chosen.reshape(b * n_sel, *chosen.shape[2:]))
        table = self.feedback.rewards(
            [e.reshape(b, n_sel, -1) for e in rimg], self.reward_text
        )  # (B, n, C)

        mean_rewards: list[list[float]] = [[] for _ in range(b)]
        for _ in range(s.steps):
            if logits is None:  # step 0 of prompt mode reuses the selection pass
                logits = self._logits(params, inputs_sel)
            if s.sampling == "sample":
                actions = torch.stack(
                    [sample_answers(logits[i], s.k, "sample", gens[i]) for i in range(b)]
                )
            else:
                actions = sample_answers(logits, s.k, "topk")
            rewards = table.gather(-1, actions)  # (B, n, K)
            loss = sum(
                reinforce_loss(logits[i], actions[i], rewards[i], s.advantage) for i in range(b)
            )
            self._step(optimizer, loss)
            for i in range(b):
                mean_rewards[i].append(float(rewards[i].mean()))
            logits = None

        with torch.no_grad():
            final = self._logits(params, inputs_centre)[:, 0].float()
        for i in range(b):
            self.state.update({k: v[i] for k, v in params.items()})
        return [
            ClassifyResult(
                logits=final[i].cpu(),
                zeroshot_logits=zeroshot[i].cpu(),
                rewards=mean_rewards[i],
                selected=sel[i].tolist(),
            )
            for i in range(b)
        ]

    @torch.no_grad()
    def zero_shot(self, image) -> torch.Tensor:
        """Logits ``(C,)`` of the unadapted policy on the centre crop (no reward model involved)."""
        views = make_views(image, 1, self.view_size, device=self.device)
        x = self.policy.preprocess(views).unsqueeze(0)
        params = {k: v.unsqueeze(0) for k, v in self.state.original.items()}
        if self.learner is not None:
            feats = self.policy.encode_preprocessed(x[0]).clone().unsqueeze(0)
            return self._logits(params, feats)[0, 0].float().cpu()
        return self._logits(params, x)[0, 0].float().cpu()
