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
    "vlmrm.tta.caption": ("CaptionResult", "CaptionTTA"),
    "vlmrm.tta.classify": ("ClassificationTTA", "ClassifyResult"),
    "vlmrm.tta.hparams": ("CaptionSettings", "ClassifySettings", "RetrieveSettings"),
    "vlmrm.tta.data": ("RetrievalData", "load_retrieval"),
    "vlmrm.datasets.classes": ("ClassificationData", "load_class_folders"),
    "vlmrm.runtime.images": ("load_image",),
    "vlmrm.tta.feedback": ("CLIPFeedback",),
    "vlmrm.datasets.imagenet": ("imagenet_classnames", "imagenet_wnid_to_name"),
    "vlmrm.tta.prompt": ("PromptLearner",),
    "vlmrm.tta.retrieve": (
        "Gallery", "RetrievalTTA", "RetrieveResult", "best_rank", "build_gallery", "recall_at",
    ),
    "vlmrm.tta.rlcf": (
        "advantages", "marginal_entropy", "reinforce_loss", "sample_answers", "select_confident",
        "sequence_reinforce_loss",
    ),
    "vlmrm.datasets.coop": ("load_coop_split", "load_coop_dataset"),
    "vlmrm.tta.views": ("make_views",),
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
