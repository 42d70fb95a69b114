"""Human labels for a CLIP reward: sheets to label, and the reward's agreement with them.

The VLM-RM paper measured success by people judging the agents' frames, and reported how
well the CLIP reward agreed with them. This package does both halves:

* :mod:`~vlmrm.label.sheets` (``python -m vlmrm.label``): frames drawn from training runs
  or videos, shuffled and numbered in grids, with one ``labels.csv`` to fill;
* :mod:`~vlmrm.label.filled`: reading the filled CSV (yes/no, 1/0, true/false, blank);
* :mod:`~vlmrm.label.agreement_run` (``python -m vlmrm.label.agreement``): the labelled
  frames scored with a CLIP reward, ROC-AUC / Spearman / EPIC against the labels.

Names are imported on first use, so the commands answer ``--help`` without torch.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_LAZY = {
    ".sheets": ("make_sheets", "sample_videos"),
    ".filled": ("read_filled", "parse_label"),
    ".agreement_run": ("label_agreement", "score_images"),
}

__all__ = sorted(name for names in _LAZY.values() for name in names)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
