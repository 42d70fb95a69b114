"""``python -m vlmrm.caption.train key=value …`` — train a captioner's mapping network.

ClipCap (``mode=clipcap``) trains on image–caption pairs, CapDec (``mode=capdec``) on
captions alone (noisy CLIP text embeddings). The CLIP features are computed once and
cached in ``<out>/features.pt``; ``<out>/mapper.safetensors`` is the captioner
(``captioner=`` of ``python -m vlmrm.tta task=caption``). Ctrl-C saves a checkpoint; the
same command resumes. This module stays light: the trainer is imported when it runs.
"""

from __future__ import annotations

import os
import sys

from vlmrm.caption.settings import CaptionTrainSettings
from vlmrm.cli.args import Command, entry_point
from vlmrm.runtime.lock import one_writer

COMMAND = Command(
    prog="python -m vlmrm.caption.train",
    settings=CaptionTrainSettings,
    summary=(
        "Train the mapping network of a CLIP-prefix captioner (frozen CLIP → mapper → frozen "
        "causal LM) on COCO-style caption data: on image embeddings (mode=clipcap) or on noisy "
        "caption embeddings (mode=capdec, text only). Checkpoints and TensorBoard go to out=; "
        "the same command resumes."
    ),
    examples=(
        "python -m vlmrm.caption.train data=/data/coco/dataset_coco.json images=/data/coco/images",
        "python -m vlmrm.caption.train mode=capdec data=/data/coco/dataset_coco.json",
        "python -m vlmrm.caption.train data=ann.json model=vlmrm-tiny lm=./tiny-lm tokenizer=clip "
        "prefix_length=4 mapper_layers=2 mapper_heads=2 epochs=1 batch_size=4",
    ),
)


def body(settings: CaptionTrainSettings) -> int:
    """Train; 130 when a signal stopped the run (its checkpoint is saved)."""
    from vlmrm.caption.trainer import CaptionTrainer

    trainer = CaptionTrainer(settings)
    stopped = trainer.run()
    doc = trainer.summary()
    out = os.fspath(trainer.out)
    if stopped:
        print(f"stopped at step {trainer.step}; checkpoint saved in {out} — run the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    last = doc["history"][-1]["loss"] if doc["history"] else float("nan")
    print(f"trained {trainer.step} steps (last loss {last:.4f}); captioner: {doc['mapper']}")
    return 0


main = entry_point(COMMAND, one_writer(body, lambda s: s.out_dir()))

if __name__ == "__main__":
    raise SystemExit(main())
