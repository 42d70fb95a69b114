"""What a tuning run reports: console lines, TensorBoard scalars and ``metrics.json``."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmrm.runtime.atomic import atomic_write_text


@dataclass
class TuneResult:
    """What a run did: where the weights are and the metrics before and after."""

    out_dir: Path
    checkpoint: Path | None
    arch: str
    step: int
    interrupted: bool = False
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    losses: list[tuple[int, float]] = field(default_factory=list)

    @property
    def load_hint(self) -> str:
        return f"vlmrm.load_clip({self.arch!r}, pretrained={os.fspath(self.checkpoint)!r})"


def fmt(m: dict[str, Any]) -> str:
    """``"loss 0.6931 | pair_acc 0.5"``: the numeric entries of a metrics dict."""
    parts = []
    for k, v in m.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif isinstance(v, int) and not isinstance(v, bool):
            parts.append(f"{k} {v}")
    return " | ".join(parts)


class Scalars:
    """TensorBoard scalars in ``out/tb`` (nothing when disabled)."""

    def __init__(self, out: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.fspath(out / "tb"), purge_step=purge_step)

    def log(self, metrics: dict[str, Any], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                self.writer.add_scalar(f"{prefix}{k}", float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_metrics(out: Path, doc: dict[str, Any]) -> Path:
    """``out/metrics.json`` (atomically: a reader never sees half a file)."""
    return atomic_write_text(out / "metrics.json", json.dumps(doc, indent=2, default=str))
