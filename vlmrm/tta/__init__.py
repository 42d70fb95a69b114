"""Test-time adaptation of CLIP with CLIP reward (RLCF, ICLR 2024).

The reward core used the other way round: a large frozen CLIP (the reward model) scores
the answers a smaller CLIP (the policy) gives for one test input, and the policy adapts
to that input by REINFORCE before answering — then forgets (episodic adaptation).

* :class:`ClassificationTTA` — zero-shot classification; adapts prompt context vectors
  (``mode="prompt"``) or the image tower (``mode="image"``), one image or a batch of
  images with independent weights at a time; ``objective="tpt"`` is the TPT baseline.
* :class:`RetrievalTTA` — image→text (adapts the image tower) and text→image (the text
  tower) retrieval against a precomputed :class:`Gallery`.
* :class:`CaptionTTA` — image captioning; adapts the mapper of a CLIP-prefix captioner
  (:class:`vlmrm.caption.ClipCaptioner`), K beam-search captions per step.
* :class:`CLIPFeedback` — one or several weighted reward CLIPs, ``2.5·max(cos, 0)``
  (:class:`vlmrm.reward.CLIPScoreReward` per model).
* ``python -m vlmrm.tta task=classify|retrieve|caption data=…`` — the command line (:mod:`.cli`).

The sub-packages: :mod:`.core` (the RLCF objective, views, reward CLIPs, per-sample weights) is
shared by one sub-package per task — :mod:`.classification`, :mod:`.retrieval`,
:mod:`.captioning` — each with its ``settings``, its adaptation (``adapt``) and its run step
(``run``); :mod:`.jobs` is the runner they use (shards, resumes, reports); the command's
settings are :mod:`.settings`.

Example::

    import vlmrm
    from vlmrm.tta import CLIPFeedback, ClassificationTTA

    policy = vlmrm.load_clip("ViT-B-16/openai", precision="fp32")
    reward = CLIPFeedback(vlmrm.load_clip("ViT-L-14/openai"))
    tta = ClassificationTTA(policy, reward, ["cat", "dog"], mode="prompt")
    result = tta.adapt(image)  # (H, W, 3) uint8
    result.pred, result.zeroshot_pred

The names below are imported on first use (module ``__getattr__``), so the command line
answers ``--help`` and refuses a bad setting without importing torch.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_EXPORTS = {
    "vlmrm.tta.captioning.adapt": ("CaptionResult", "CaptionTTA"),
    "vlmrm.tta.captioning.settings": ("CaptionSettings",),
    "vlmrm.tta.classification.adapt": ("ClassificationTTA", "ClassifyResult"),
    "vlmrm.tta.classification.prompt": ("PromptLearner",),
    "vlmrm.tta.classification.settings": ("ClassifySettings",),
    "vlmrm.tta.core.feedback": ("CLIPFeedback",),
    "vlmrm.tta.core.rlcf": (
        "advantages", "marginal_entropy", "reinforce_loss", "sample_answers", "select_confident",
        "sequence_reinforce_loss",
    ),
    "vlmrm.tta.core.views": ("make_views",),
    "vlmrm.tta.retrieval.adapt": (
        "Gallery", "RetrievalTTA", "RetrieveResult", "best_rank", "build_gallery", "recall_at",
    ),
    "vlmrm.tta.retrieval.data": ("RetrievalData", "load_retrieval"),
    "vlmrm.tta.retrieval.settings": ("RetrieveSettings",),
    "vlmrm.datasets.classes": ("ClassificationData", "load_class_folders"),
    "vlmrm.datasets.coop": ("load_coop_split", "load_coop_dataset"),
    "vlmrm.datasets.imagenet": ("imagenet_classnames", "imagenet_wnid_to_name"),
    "vlmrm.runtime.images": ("load_image",),
}  # fmt: skip

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
