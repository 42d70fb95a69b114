"""Test-time adaptation of CLIP with CLIP reward (RLCF, ICLR 2024).

The reward core used the other way round: a large frozen CLIP (the reward model) scores
the answers a smaller CLIP (the policy) gives for one test input, and the policy adapts
to that input by REINFORCE before answering — then forgets (episodic adaptation).

* :class:`ClassificationTTA` — zero-shot classification; adapts prompt context vectors
  (``mode="prompt"``) or the image tower (``mode="image"``), one image or a batch of
  images with independent weights at a time.
* :class:`RetrievalTTA` — image→text (adapts the image tower) and text→image (the text
  tower) retrieval against a precomputed :class:`Gallery`.
* :class:`CLIPFeedback` — one or several weighted reward CLIPs, ``2.5·max(cos, 0)``
  (:class:`vlmrm.reward.CLIPScoreReward` per model).
* ``python -m vlmrm.tta task=classify|retrieve data=…`` — the command line (:mod:`.cli`).

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

import importlib
from typing import Any

_EXPORTS = {
    "ClassificationTTA": "vlmrm.tta.classify",
    "ClassifyResult": "vlmrm.tta.classify",
    "ClassifySettings": "vlmrm.tta.hparams",
    "RetrieveSettings": "vlmrm.tta.hparams",
    "ClassificationData": "vlmrm.tta.data",
    "RetrievalData": "vlmrm.tta.data",
    "load_class_folders": "vlmrm.tta.data",
    "load_retrieval": "vlmrm.tta.data",
    "load_image": "vlmrm.runtime.images",
    "CLIPFeedback": "vlmrm.tta.feedback",
    "imagenet_classnames": "vlmrm.tta.imagenet",
    "imagenet_wnid_to_name": "vlmrm.tta.imagenet",
    "PromptLearner": "vlmrm.tta.prompt",
    "Gallery": "vlmrm.tta.retrieve",
    "RetrievalTTA": "vlmrm.tta.retrieve",
    "RetrieveResult": "vlmrm.tta.retrieve",
    "best_rank": "vlmrm.tta.retrieve",
    "build_gallery": "vlmrm.tta.retrieve",
    "recall_at": "vlmrm.tta.retrieve",
    "advantages": "vlmrm.tta.rlcf",
    "reinforce_loss": "vlmrm.tta.rlcf",
    "sample_answers": "vlmrm.tta.rlcf",
    "select_confident": "vlmrm.tta.rlcf",
    "make_views": "vlmrm.tta.views",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlmrm.tta' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
