"""Test-time adaptation of CLIP with CLIP reward (RLCF, ICLR 2024).

The reward core used the other way round: a large frozen CLIP (the reward model) scores
the answers a smaller CLIP (the policy) gives for one test input, and the policy adapts
to that input by REINFORCE before answering — then forgets (episodic adaptation).

* :class:`ClassificationTTA` — zero-shot classification; adapts prompt context vectors
  (``mode="prompt"``) or the image tower (``mode="image"``), one image or a batch of
  images with independent weights at a time.
* :class:`RetrievalTTA` — image→text (adapts the image tower) and text→image (the text
  tower) retrieval against a precomputed :class:`Gallery`.
* :class:`CLIPFeedback` — one or several weighted reward CLIPs, ``2.5·max(cos, 0)``.
* ``python -m vlmrm.tta task=classify|retrieve data=…`` — the command line (:mod:`.cli`).

Example::

    import vlmrm
    from vlmrm.tta import CLIPFeedback, ClassificationTTA

    policy = vlmrm.load_clip("ViT-B-16/openai", precision="fp32")
    reward = CLIPFeedback(vlmrm.load_clip("ViT-L-14/openai"))
    tta = ClassificationTTA(policy, reward, ["cat", "dog"], mode="prompt")
    result = tta.adapt(image)  # (H, W, 3) uint8
    result.pred, result.zeroshot_pred
"""

from vlmrm.tta.classify import ClassificationTTA, ClassifyResult, ClassifySettings
from vlmrm.tta.data import (
    ClassificationData,
    RetrievalData,
    load_class_folders,
    load_image,
    load_retrieval,
)
from vlmrm.tta.feedback import CLIPFeedback
from vlmrm.tta.imagenet import imagenet_classnames, imagenet_wnid_to_name
from vlmrm.tta.prompt import PromptLearner
from vlmrm.tta.retrieve import (
    Gallery,
    RetrievalTTA,
    RetrieveResult,
    RetrieveSettings,
    best_rank,
    build_gallery,
    recall_at,
)
from vlmrm.tta.rlcf import advantages, clip_reward, reinforce_loss, sample_answers, select_confident
from vlmrm.tta.views import make_views

__all__ = [
    "CLIPFeedback",
    "ClassificationData",
    "ClassificationTTA",
    "ClassifyResult",
    "ClassifySettings",
    "Gallery",
    "PromptLearner",
    "RetrievalData",
    "RetrievalTTA",
    "RetrieveResult",
    "RetrieveSettings",
    "advantages",
    "best_rank",
    "build_gallery",
    "clip_reward",
    "imagenet_classnames",
    "imagenet_wnid_to_name",
    "load_class_folders",
    "load_image",
    "load_retrieval",
    "make_views",
    "recall_at",
    "reinforce_loss",
    "sample_answers",
    "select_confident",
]
