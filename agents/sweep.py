"""Hydra-style sweeps of ``python -m vlmrm.train -m``: kept for imports; see :mod:`vlmrm.sweep`.

The expansion, the sweep folder and the launchers live once, in :mod:`vlmrm.sweep`, shared
by every command that accepts ``-m``.
"""

from __future__ import annotations

from vlmrm.sweep.cli import summary_table
from vlmrm.sweep.expand import Job, expand_sweep

__all__ = ["Job", "expand_sweep", "summary_table"]
