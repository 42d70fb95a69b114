"""``python -m vlmrm.tune.finetune key=value ...`` — CLIP fine-tuning on image–caption data.

A supervised stage (the symmetric CLIP cross-entropy over in-batch pairs) and/or an RL
stage (REINFORCE over in-batch candidate captions, reward = correctness × confidence),
validated every epoch on a seeded 10% of the images, the best checkpoint kept, and the
test 10% scored (Recall@1/5/10 and matching accuracy, both ways) for the untuned and the
tuned model; ``wise_alpha=`` also saves the WiSE-FT interpolation. Ctrl-C, SIGTERM or a
kill leaves a checkpoint (:mod:`vlmrm.tune.finetune.checkpoint`); the same command
continues the run. The work is in :mod:`vlmrm.tune.finetune.run`; this module stays
torch-free.
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.runtime.lock import one_writer
from vlmrm.tune.finetune.settings import FinetuneSettings

COMMAND = Command(
    prog="python -m vlmrm.tune.finetune",
    settings=FinetuneSettings,
    summary=(
        "Fine-tune CLIP on image–caption data (supervised contrastive, RL, or both) with a seeded "
        "80/10/10 split by image; the best-on-val weights load with "
        "load_clip(ARCH, pretrained=<out>/model.safetensors). The same command continues a "
        "stopped run."
    ),
    examples=(
        "python -m vlmrm.tune.finetune data=coco/annotations/captions_train2017.json "
        "image_root=coco/train2017 model=ViT-B-32/openai epochs=5 lr=1e-5",
        "python -m vlmrm.tune.finetune data=flickr30k/dataset_flickr30k.json image_root=flickr30k/images "
        "stage=sft+rl wise_alpha=0.5",
        "python -m vlmrm.tune.finetune data=my_hf_dataset/ image_column=image text_column=caption",
    ),
)


def body(settings: FinetuneSettings) -> int:
    """Run the fine-tuning; 130 when a signal stopped it (a checkpoint is saved: the same
    command continues the run)."""
    import sys

    from vlmrm.tune.finetune.run import finetune

    doc = finetune(settings)
    if not doc.get("interrupted"):
        return 0
    print(f"{doc['signal']}: stopped at step {doc['step']}, checkpoint saved in {settings.out}; "
          "run the same command to continue", file=sys.stderr, flush=True)  # fmt: skip
    return 130


main = entry_point(COMMAND, one_writer(body, lambda s: s.out))

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
