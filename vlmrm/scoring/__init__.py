"""Scoring videos with a CLIP reward, and the ``score``/``record`` commands built on it.

``from vlmrm.scoring import score_video, VideoScores`` is the library face; the modules:

* :mod:`~vlmrm.scoring.scores`: :class:`VideoScores` and :class:`ScoreRun` (results, torch-free);
* :mod:`~vlmrm.scoring.core`: :func:`score_video` (streaming, one encoding pass per sweep);
* :mod:`~vlmrm.scoring.plots`: reward plots and reward videos;
* :mod:`~vlmrm.scoring.settings`: the commands' settings (torch-free);
* :mod:`~vlmrm.scoring.runner`: ``python -m vlmrm.score`` (one process or torchrun);
* :mod:`~vlmrm.scoring.outputs` and :mod:`~vlmrm.scoring.report`: its files and tables;
* :mod:`~vlmrm.scoring.html_report`: the self-contained page of ``report=html``;
* :mod:`~vlmrm.scoring.recorder`: ``python -m vlmrm.record``.

Names are imported on first use, so the settings (and ``--help``) load without torch.
"""

from __future__ import annotations

from vlmrm.runtime.lazy import lazy_attributes

_LAZY = {
    "vlmrm.scoring.scores": ("VideoScores", "prompt_label"),
    "vlmrm.scoring.core": ("score_video",),
    "vlmrm.scoring.plots": ("reward_figure", "plot_scores", "write_reward_video"),
}

__all__ = sorted(name for names in _LAZY.values() for name in names)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
