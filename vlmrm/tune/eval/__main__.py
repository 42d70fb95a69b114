"""``python -m vlmrm.tune.eval key=value ...`` — evaluate a CLIP checkpoint without tuning it.

Every metric the tuner reports, on held-out data only, for the given model and (with
``base=``) the untuned model beside it: VSR accuracy on each VSR file given (e.g. the
random and the zero-shot splits' test files; the swap decider and the threshold fitted
on ``vsr_dev=``), per relation and per meta-category, beside human accuracy (95.4%);
pairwise preference accuracy on held-out ranked sets (``pref=``); and image–text
Recall@1/5/10 on a held-out caption set (``captions=``, e.g. the test 10% of a
fine-tuning run via ``captions_split=<run>/split.json``) to catch forgetting. Torch is
imported only when the command runs (:mod:`vlmrm.tune.eval.run`).
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.tune.eval.settings import EvalSettings

COMMAND = Command(
    prog="python -m vlmrm.tune.eval",
    settings=EvalSettings,
    summary=(
        "Evaluate a CLIP (a tuned checkpoint or any model) on VSR, held-out preferences and "
        "image–text retrieval, with the untuned model (base=) beside; writes <out>/metrics.json."
    ),
    examples=(
        "python -m vlmrm.tune.eval model=ViT-B-32 pretrained=runs/tune/model.safetensors base=ViT-B-32/openai "
        "vsr=[vsr/random/test.jsonl,vsr/zeroshot/test.jsonl] vsr_dev=[vsr/random/dev.jsonl,vsr/zeroshot/dev.jsonl] "
        "vsr_image_root=coco/images",
        "python -m vlmrm.tune.eval model=ViT-B-32 pretrained=runs/finetune/model.safetensors base=ViT-B-32/openai "
        "captions=coco/captions.json captions_split=runs/finetune/split.json pref=heldout.jsonl",
    ),
)


def body(cfg: EvalSettings) -> int:
    from vlmrm.tune.eval.run import evaluate

    evaluate(cfg)
    return 0


main = entry_point(COMMAND, body)

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
