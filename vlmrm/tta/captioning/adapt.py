"""RLCF image captioning: adapt a CLIP-prefix captioner's mapper to each test image.

Per test image (or each of a batch of images, with independent weights):

1. the policy CLIP embeds the image once (the frozen tower); the reward CLIPs embed it once;
2. ``steps`` (4) times: the mapper (a copy of its weights) gives the LM prefix; ``k``
   captions by beam search with ``k`` beams, all returned (or nucleus sampling,
   ``top_p`` 0.92); the reward CLIPs score each caption ``2.5·max(cos, 0)``; advantage =
   reward − mean over the k; loss = mean over captions of advantage × the caption's
   length-normalised cross-entropy (padding masked,
   :meth:`~vlmrm.caption.captioner.ClipCaptioner.caption_nll`); one AdamW step
   (lr 2e-6, weight decay 0, eps 1e-6);
3. the final caption by 5-beam search with the adapted mapper, lower-cased;
4. the mapper's copy is dropped: the next image starts from the same weights (episodic),
   or from a moving average of adapted weights with ``ema=True``.

The language model and the CLIP never change; only copies of the mapper's weights train.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vlmrm.caption.captioner import EMPTY, Caption, ClipCaptioner
from vlmrm.tta.captioning.settings import CaptionSettings
from vlmrm.tta.core.adapter import RLCFAdapter, resolve_settings
from vlmrm.tta.core.episodic import call_stacked, stack_params
from vlmrm.tta.core.feedback import CLIPFeedback
from vlmrm.tta.core.rlcf import seed_for, sequence_reinforce_loss


@dataclass
class CaptionResult:
    """One image's captions before and after adaptation, and the reward of every step."""

    caption: str
    zeroshot_caption: str
    rewards: list[float] = field(default_factory=list)  # mean reward of the k captions, per step
    samples: list[str] = field(default_factory=list)  # the k captions of the first step


class CaptionTTA(RLCFAdapter):
    """Test-time adaptation of a :class:`~vlmrm.caption.captioner.ClipCaptioner` with CLIP reward.

    Args:
        captioner: the captioner whose mapper adapts (its CLIP and LM stay frozen).
        feedback: the reward CLIPs (:class:`~vlmrm.tta.core.feedback.CLIPFeedback`).
        settings: :class:`~vlmrm.tta.captioning.settings.CaptionSettings` (keyword overrides allowed).
    """

    def __init__(
        self,
        captioner: ClipCaptioner,
        feedback: CLIPFeedback,
        settings: CaptionSettings | None = None,
        **overrides,
    ) -> None:
        self.settings = resolve_settings(CaptionSettings, settings, overrides, "captioning")
        self._init_models(captioner.clip, feedback)
        self.captioner = captioner
        self._init_state(captioner.mapper_params())

    def adapt(self, image, index: int = 0) -> CaptionResult:
        """Adapt to one ``(H, W, 3)`` uint8 image; ``index`` seeds nucleus sampling."""
        return self.adapt_batch([image], [index])[0]

    def adapt_batch(self, images, indices: list[int] | None = None) -> list[CaptionResult]:
        """Adapt to several images at once, each with its own copy of the mapper.

        The same results as :meth:`adapt` on each image (up to float rounding and beam
        ties); faster on a GPU, where one LM call serves every image's captions.
        """
        images = [torch.as_tensor(im) for im in images]
        if not images:
            return []
        b = len(images)
        indices = list(range(b)) if indices is None else [int(i) for i in indices]
        # The frozen towers, once per image (one at a time: test images differ in size).
        emb = torch.cat([self.captioner.embed_images(im) for im in images]).clone()  # (B, D)
        per_image = [self.feedback.embed_images(im.unsqueeze(0)) for im in images]
        reward_image = [
            torch.cat(e).unsqueeze(1) for e in zip(*per_image, strict=True)
        ]  # (B, 1, D)
        params = stack_params(self.state.start, b)
        s = self.settings
        optimizer = torch.optim.AdamW(
            list(params.values()), lr=s.lr, weight_decay=s.weight_decay, eps=1e-6
        )
        zeroshot = self._final(params, emb)
        rewards: list[list[float]] = [[] for _ in range(b)]
        first: list[list[str]] = [[] for _ in range(b)]
        for step in range(s.steps):
            prefix = self._prefix(params, emb)
            seed = seed_for(step, indices[0])
            captions = self._sample(prefix, seed)
            table = self._rewards(reward_image, captions)  # (B, K)
            flat = [c for row in captions for c in row]
            nll = self.captioner.caption_nll(prefix.repeat_interleave(s.k, 0), flat).view(b, s.k)
            self._step(optimizer, sequence_reinforce_loss(nll, table, s.advantage))
            for i in range(b):
                rewards[i].append(round(float(table[i].mean()), 5))
                if step == 0:
                    first[i] = [c.text for c in captions[i]]
        final = self._final(params, emb) if s.steps else zeroshot
        for i in range(b):
            self.state.update({k: v[i] for k, v in params.items()})
        for m in self.feedback.models:  # captions are seen once: keep no per-caption cache
            m.clear_text_cache()
        return [CaptionResult(final[i], zeroshot[i], rewards[i], first[i]) for i in range(b)]

    def _prefix(self, params: dict[str, torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        """Each image's prefix through its own mapper copy, ``(B, P, D_lm)``."""
        cap = self.captioner
        return call_stacked(
            lambda p, e: cap.prefix(e.unsqueeze(0), p)[0], params, emb, module=cap.mapper
        )

    def _sample(self, prefix: torch.Tensor, seed: int) -> list[list[Caption]]:
        """The k captions of each image: k-beam search, all beams returned, or nucleus sampling."""
        s = self.settings
        if s.decoding == "nucleus":
            return self.captioner.generate(prefix, s.k, top_p=s.top_p, seed=seed)
        return self.captioner.generate(prefix, s.k, beams=s.k)

    def _rewards(
        self, reward_image: list[torch.Tensor], captions: list[list[Caption]]
    ) -> torch.Tensor:
        """``2.5·max(cos, 0)`` (weighted over reward models) of each image's captions, ``(B, K)``."""
        b, k = len(captions), len(captions[0])
        texts = [c.text or EMPTY for row in captions for c in row]
        text_emb = [e.view(b, k, -1) for e in self.feedback.embed_texts(texts)]
        return self.feedback.rewards(reward_image, text_emb)[:, 0].float()

    @torch.no_grad()
    def _final(self, params: dict[str, torch.Tensor], emb: torch.Tensor) -> list[str]:
        """The answer: ``final_beams``-beam search with the current weights, lower-cased."""
        prefix = self._prefix({k: v.detach() for k, v in params.items()}, emb)
        beams = self.settings.final_beams
        return [row[0].text.lower() for row in self.captioner.generate(prefix, 1, beams=beams)]
