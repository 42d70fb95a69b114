"""``curves.png``: each setting's evaluation curve, IQM over seeds with its interval as a band.

One panel per metric (returns of different rewards live on different scales), one colour
per setting, the same colour in every panel. Drawn on matplotlib's Agg canvas directly
(no pyplot state, works headless) and returned as PNG bytes, so the same image is written
to ``curves.png`` and inlined in ``study.html``.
"""

from __future__ import annotations

import io
import math

import numpy as np

from vlmrm.study.aggregate import Curve

_COLORS = [f"C{i}" for i in range(10)]
#: Axis titles of the metrics.
METRIC_TITLES = {
    "gt_return": "ground-truth return",
    "clip_return": "CLIP return",
    "success_rate": "success rate",
}


def setting_label(setting: dict[str, str], limit: int = 48) -> str:
    """``reward.alpha=0.5, goal=...``, shortened to ``limit`` characters; all jobs if empty."""
    text = ", ".join(f"{k}={v}" for k, v in setting.items()) or "all jobs"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def curves_png(curves: list[Curve], metrics: list[str], dpi: int = 100) -> bytes | None:
    """The figure as PNG bytes; None when no setting has an evaluation curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [m for m in metrics if any(c.metric == m for c in curves)]
    if not shown:
        return None
    settings: list[tuple[tuple[str, str], ...]] = []
    for c in curves:
        key = tuple(c.setting.items())
        if key not in settings:
            settings.append(key)
    ncol = 1 if len(settings) <= 4 else 2
    legend_in = 0.22 * math.ceil(len(settings) / ncol) + 0.05
    fig = Figure(figsize=(5.2 * len(shown), 3.6 + legend_in), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    legend: dict[int, tuple] = {}  # setting number -> (line, label)
    for ax, metric in zip(axes, shown, strict=True):
        for c in (c for c in curves if c.metric == metric):
            k = settings.index(tuple(c.setting.items()))
            color = _COLORS[k % 10]
            est = c.estimate
            (line,) = ax.plot(c.steps, est.iqm, color=color, lw=1.6, marker="o" if c.steps.size < 2 else None)
            if np.isfinite(est.low).any():
                ax.fill_between(c.steps, est.low, est.high, color=color, alpha=0.2, lw=0)
            legend.setdefault(k, (line, f"{setting_label(c.setting)} (n={c.seeds})"))
        ax.set_title(METRIC_TITLES.get(metric, metric), fontsize="medium")
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"IQM {metric}")
        ax.grid(True, alpha=0.3)
    fig.suptitle("Evaluation curves: IQM over seeds, 95% bootstrap interval shaded", fontsize="medium")
    handles, labels = zip(*(legend[k] for k in sorted(legend)), strict=True)
    fig.legend(handles=list(handles), labels=list(labels), loc="lower center", ncol=ncol, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0.0, min(0.45, legend_in / (3.6 + legend_in)), 1.0, 1.0))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
