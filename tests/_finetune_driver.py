"""``python -m vlmrm.tune.finetune`` with a fault at a chosen step, for ``test_finetune_resume``.

Usage: ``python tests/_finetune_driver.py FAULT STEP key=value ...`` runs the command's own
``main`` with those settings; the fault strikes when the run reaches optimiser step STEP,
so where a run stops never depends on timing:

* ``sigint``, ``sigterm``: the process sends itself the signal right after the step (a
  user's Ctrl-C, a scheduler's stop) and the command stops as it would;
* ``kill-after-publish``: SIGKILL right after the checkpoint of the step is published
  (its folder renamed into place; older ones not pruned yet);
* ``kill-mid-save``: SIGKILL in the middle of the save of the step: its weights file is
  written and flushed, the rest of the checkpoint is not.
"""

from __future__ import annotations

import functools
import os
import signal
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from vlmrm.runtime import units  # noqa: E402
from vlmrm.tune.finetune import main  # noqa: E402
from vlmrm.tune.finetune import run as finetune_run  # noqa: E402


def _kill_after_publish() -> None:
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        if str(src).endswith(".partial"):
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


def _kill_mid_save() -> None:
    real = units.fsync_file

    def fsync_file(path):
        if os.path.basename(path) == "best.safetensors":  # the weights are flushed, the rest is not
            os.kill(os.getpid(), signal.SIGKILL)
        real(path)

    units.fsync_file = fsync_file


def callback_for(fault: str, at: int):
    def callback(step: int, row: dict) -> None:
        if step != at:
            return
        if fault in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if fault == "sigint" else signal.SIGTERM)
        elif fault == "kill-after-publish":
            _kill_after_publish()  # the save of this step comes next
        elif fault == "kill-mid-save":
            _kill_mid_save()
        else:
            raise SystemExit(f"unknown fault {fault!r}")

    return callback


if __name__ == "__main__":
    fault, at, *argv = sys.argv[1:]
    finetune_run.finetune = functools.partial(finetune_run.finetune, callback=callback_for(fault, int(at)))
    raise SystemExit(main(argv))
