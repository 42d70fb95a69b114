"""Scoring videos with a CLIP reward, and the ``score``/``record`` commands built on it.

``from vlmrm.scoring import score_video, VideoScores`` is the library face; the modules:

* :mod:`~vlmrm.scoring.scores`: :class:`VideoScores` (results, torch-free);
* :mod:`~vlmrm.scoring.core`: :func:`score_video` (streaming, one encoding pass per sweep);
* :mod:`~vlmrm.scoring.plots`: reward plots and reward videos;
* :mod:`~vlmrm.scoring.settings`: the commands' settings (torch-free);
* :mod:`~vlmrm.scoring.runner`: ``python -m vlmrm.score`` (one process or torchrun);
* :mod:`~vlmrm.scoring.outputs` and :mod:`~vlmrm.scoring.report`: its files and tables;
* :mod:`~vlmrm.scoring.recorder`: ``python -m vlmrm.record``.

Names are imported on first use, so the settings (and ``--help``) load without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VideoScores": "vlmrm.scoring.scores",
    "prompt_label": "vlmrm.scoring.scores",
    "score_video": "vlmrm.scoring.core",
    "reward_figure": "vlmrm.scoring.plots",
    "plot_scores": "vlmrm.scoring.plots",
    "write_reward_video": "vlmrm.scoring.plots",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vlmrm.scoring' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
