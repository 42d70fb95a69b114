"""RLCF test-time adaptation for zero-shot image classification.

Per test image (or per image of a batch, independently):

1. make 64 views (centre crop + 63 random resized crops with flips, :mod:`vlmrm.tta.core.views`);
2. policy logits on all views; keep the 10% with the lowest entropy (chosen once);
3. the reward CLIPs embed those views once; the reward of class ``c`` for a view is
   ``2.5·max(cos(view, "a photo of a {c}."), 0)``;
4. ``steps`` times: take the top-K classes of every kept view, advantage = reward − mean
   over the K, REINFORCE loss (:func:`vlmrm.tta.core.rlcf.reinforce_loss`), one AdamW step;
5. predict with the adapted weights on the centre crop; start the next image afresh.

``objective="tpt"`` replaces steps 3–4 by TPT (test-time prompt tuning): minimise the
entropy of the kept views' averaged prediction, no reward model — the baseline of the
RLCF paper's tables (TPT: 1 step, lr 5e-3 in prompt mode).

What is adapted (``mode``): ``"prompt"`` — 4 context token vectors of a CoOp prompt
learner (:class:`vlmrm.tta.classification.prompt.PromptLearner`; lr 7e-3), the image features stay
frozen; or ``"image"`` — the image tower (lr 1e-5; ``image_params="norm"`` for only its
norm layers), the class embeddings stay frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel, check_prompts
from vlmrm.tta.classification.prompt import PromptLearner
from vlmrm.tta.classification.settings import DEFAULT_LR, MODES, ClassifySettings
from vlmrm.tta.core.adapter import RLCFAdapter, resolve_settings
from vlmrm.tta.core.episodic import call_stacked, stack_params, trainable_params
from vlmrm.tta.core.feedback import CLIPFeedback
from vlmrm.tta.core.rlcf import marginal_entropy, reinforce_loss, sample_answers, select_confident
from vlmrm.tta.core.views import make_views

__all__ = ["DEFAULT_LR", "MODES", "ClassificationTTA", "ClassifyResult", "ClassifySettings"]


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


@dataclass
class _Selection:
    """The confident views of a batch: their indices ``(B, n)``, the policy's inputs for them
    and for the centre crop, the logits of the selection pass (prompt mode reuses them for
    step 0) and the zero-shot logits on the centre crop."""

    indices: torch.Tensor
    logits: torch.Tensor | None
    inputs: torch.Tensor
    centre: torch.Tensor
    zeroshot: torch.Tensor


class ClassificationTTA(RLCFAdapter):
    """Adapt a policy CLIP to each test image with feedback from reward CLIPs (RLCF).

    Args:
        policy: the CLIP being adapted (loaded in fp32, or ``precision="amp"`` for mixed
            precision).
        feedback: the reward CLIPs (:class:`CLIPFeedback`).
        classnames: candidate class names.
        settings: :class:`ClassifySettings`; keyword arguments override its fields.

    The loaded policy is never modified: adapted weights are per-sample copies (see
    :mod:`vlmrm.tta.core.episodic`), so every call starts from the same weights unless EMA is on.
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
            start = trainable_params(policy.model, s.image_params, within="visual")
            self.class_embeddings = policy.embed_texts(prompts).clone()
        self._init_state(start)

    # -- internals -------------------------------------------------------------------
    def _image_features(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Adapted image tower on preprocessed views ``(B, N, 3, S, S)`` → unit ``(B, N, D)``."""
        policy = self.policy
        return call_stacked(
            lambda p, v: policy.image_features(v, params=p), params, x, module=policy.model
        )

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
        params = stack_params(self.state.start, b)
        sel = self._select(params, views)
        if s.objective == "tpt":  # the baseline: no reward model involved
            mean_rewards = self._entropy_steps(params, sel)
        else:
            table = self._reward_table(views, sel.indices)  # (B, n, C)
            mean_rewards = self._reinforce(params, sel, table, gens)
        with torch.no_grad():
            final = self._logits(params, sel.centre)[:, 0].float()
        for i in range(b):
            self.state.update({k: v[i] for k, v in params.items()})
        return [
            ClassifyResult(
                logits=final[i].cpu(),
                zeroshot_logits=sel.zeroshot[i].cpu(),
                rewards=mean_rewards[i],
                selected=sel.indices[i].tolist(),
            )
            for i in range(b)
        ]

    def _select(self, params: dict[str, torch.Tensor], views: torch.Tensor) -> _Selection:
        """Policy logits on every view; keep the most confident ones (chosen once)."""
        b, n_views = views.shape[:2]
        x = self.policy.preprocess(views.reshape(b * n_views, *views.shape[2:]))
        x = x.reshape(b, n_views, *x.shape[1:])
        rows = torch.arange(b, device=self.device).unsqueeze(1)
        if self.learner is None:
            with torch.no_grad():
                logits_all = self._logits(params, x)
            idx = select_confident(logits_all, self.settings.select)
            return _Selection(idx, None, x[rows, idx], x[:, :1], logits_all[:, 0].detach().float())
        flat = x.reshape(b * n_views, *x.shape[2:])
        chunk = self.policy.batch_size
        feats = torch.cat(
            [self.policy.encode_preprocessed(flat[i : i + chunk]) for i in range(0, flat.shape[0], chunk)]
        ).reshape(b, n_views, -1)
        feats = feats.clone()  # frozen image features (out of inference mode)
        logits_all = self._logits(params, feats)
        idx = select_confident(logits_all, self.settings.select)  # (B, n)
        zeroshot = logits_all[:, 0].detach().float()
        return _Selection(idx, logits_all[rows, idx], feats[rows, idx], feats[:, :1], zeroshot)

    def _reward_table(self, views: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Rewards ``(B, n, C)`` of every class for every kept view (the reward CLIPs embed them once)."""
        b = views.shape[0]
        rows = torch.arange(b, device=self.device).unsqueeze(1)
        chosen = views[rows, idx]  # (B, n, 3, S, S)
        n_sel = chosen.shape[1]
        rimg = self.feedback.embed_images(chosen.reshape(b * n_sel, *chosen.shape[2:]))
        return self.feedback.rewards([e.reshape(b, n_sel, -1) for e in rimg], self.reward_text)

    def _reinforce(
        self,
        params: dict[str, torch.Tensor],
        sel: _Selection,
        table: torch.Tensor,
        gens: list[torch.Generator],
    ) -> list[list[float]]:
        """``steps`` REINFORCE steps on the kept views; returns each image's mean reward per step."""
        s = self.settings
        b = table.shape[0]
        optimizer = torch.optim.AdamW(list(params.values()), lr=s.lr, weight_decay=s.weight_decay)
        mean_rewards: list[list[float]] = [[] for _ in range(b)]
        logits = sel.logits
        for _ in range(s.steps):
            if logits is None:  # step 0 of prompt mode reuses the selection pass
                logits = self._logits(params, sel.inputs)
            if s.sampling == "sample":
                actions = torch.stack([sample_answers(logits[i], s.k, "sample", gens[i]) for i in range(b)])
            else:
                actions = sample_answers(logits, s.k, "topk")
            rewards = table.gather(-1, actions)  # (B, n, K)
            loss = sum(reinforce_loss(logits[i], actions[i], rewards[i], s.advantage) for i in range(b))
            self._step(optimizer, loss)
            for i in range(b):
                mean_rewards[i].append(float(rewards[i].mean()))
            logits = None
        return mean_rewards

    def _entropy_steps(self, params: dict[str, torch.Tensor], sel: _Selection) -> list[list[float]]:
        """TPT: ``steps`` AdamW steps on the marginal entropy of the kept views; no rewards."""
        s = self.settings
        optimizer = torch.optim.AdamW(list(params.values()), lr=s.lr, weight_decay=s.weight_decay)
        logits = sel.logits
        for _ in range(s.steps):
            if logits is None:
                logits = self._logits(params, sel.inputs)
            self._step(optimizer, marginal_entropy(logits).sum())
            logits = None
        return [[] for _ in range(sel.indices.shape[0])]

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
