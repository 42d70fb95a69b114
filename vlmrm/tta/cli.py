"""``python -m vlmrm.tta key=value …`` — RLCF test-time adaptation from the command line.

Per-sample results go to ``<out>/results.jsonl`` as they finish; running the same command
again skips the samples already there (resume). At the end the file is rewritten in run
order (sample index order; the seeded permutation with ``shuffle=true``), followed by any
records of earlier runs outside this run's selection. Zero-shot and adapted metrics are
printed side by side at the end and written to ``<out>/metrics.json``.

On several GPUs or machines, launch it with torchrun (the same arguments)::

    torchrun --standalone --nproc-per-node=4 -m vlmrm.tta task=classify data=/data/imagenet-a

Every rank loads the policy and reward models on its own device (``cuda:<local rank>``;
the CPU and gloo without GPUs) and adapts every N-th pending sample, appending its results
to ``<out>/results.rank<r>.jsonl``; rank 0 merges them into ``results.jsonl`` (the same
records and order as a one-process run: per-sample seeds depend on the sample, not the
rank) and alone writes the metrics. A resumed run, with any number of processes, first
merges the rank files left by an interruption. Retrieval embeds the gallery once, split
over the ranks by batches; rank 0 caches it in ``<out>/gallery.pt`` and sends it to the
others on a resume. Captioning shards the test images the same way (each rank loads the
captioner and the CLIPScore model). A problem every rank meets (bad data, missing weights) is printed once,
by rank 0 (:class:`vlmrm.distributed.AgreedError`).

This module stays light (no torch): the settings are :class:`~vlmrm.tta.settings.TTASettings`;
the task's run step (:func:`run_step`) is imported when the command runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from vlmrm.cli.args import Command, entry_point
from vlmrm.runtime.lock import one_writer
from vlmrm.tta.settings import TTASettings

COMMAND = Command(
    prog="python -m vlmrm.tta",
    settings=TTASettings,
    summary=(
        "Test-time adaptation of CLIP with CLIP feedback (RLCF): for each test input the policy "
        "CLIP (model=) samples answers, reward CLIPs (reward_model=) score them 2.5·max(cos, 0), "
        "one REINFORCE step per round, then the weights are reset. Results and metrics go to "
        "out=; the same command resumes an interrupted run. task=caption adapts the mapper of a "
        "CLIP-prefix captioner (captioner=, trained with python -m vlmrm.caption.train; frozen "
        "LM lm=): per image, steps × (k captions by k-beam search, CLIP reward, REINFORCE on "
        "their length-normalised cross-entropy), then the final caption by final_beams-beam "
        "search; BLEU, METEOR, ROUGE-L, CIDEr, CLIPScore and RefCLIPScore, zero-shot and "
        "adapted, go to metrics.json, the captions to captions.json (COCO results format)."
    ),
    examples=(
        "python -m vlmrm.tta task=classify data=/data/imagenet-a mode=prompt",
        "python -m vlmrm.tta task=classify data=/data/imagenet-r mode=image model=ViT-B-16/openai "
        "reward_model=ViT-L-14/openai",
        "python -m vlmrm.tta task=classify data=/data/imagenet-a model=ViT-B-16 pretrained=tuned.safetensors",
        "python -m vlmrm.tta task=retrieve data=/data/flickr30k/dataset_flickr30k.json "
        "images=/data/flickr30k/images direction=i2t",
        "python -m vlmrm.tta task=retrieve data=ann.json reward_model=[ViT-L-14/openai,ViT-L-14] "
        "reward_pretrained=[null,reward.safetensors] reward_weights=[5,3]",
        "python -m vlmrm.tta task=caption data=/data/flickr30k/dataset_flickr30k.json "
        "images=/data/flickr30k/images captioner=runs/caption/clipcap-dataset_coco/mapper.safetensors",
        "python -m vlmrm.tta task=caption data=/data/nocaps/nocaps_val_4500_captions.json "
        "images=/data/nocaps/images captioner=mapper.safetensors k=6 lr=3e-6",
    ),
)


def run_step(task: str) -> Callable[[TTASettings], dict[str, Any]]:
    """The run step of ``task=`` (settings → metrics, on every rank under torchrun).

    The command picks it, so the tasks import the shared runner (:mod:`vlmrm.tta.jobs`) and
    the runner imports no task.
    """
    if task == "classify":
        from vlmrm.tta.classification.run import run_classify

        return run_classify
    if task == "caption":
        from vlmrm.tta.captioning.run import run_caption

        return run_caption
    from vlmrm.tta.retrieval.run import run_retrieve

    return run_retrieve


def run(settings: TTASettings) -> dict[str, Any]:
    """Run the configured task; returns its metrics (on every rank under torchrun)."""
    return run_step(settings.task)(settings)


def body(settings: TTASettings) -> int:
    """Join torchrun's process group (if any), run the task, always leave the group."""
    from vlmrm.distributed import distributed_session

    try:
        with distributed_session():
            run(settings)
    except KeyboardInterrupt:
        from vlmrm.runtime.epilogue import last_word

        last_word(
            f"\ninterrupted; finished samples are saved in {os.fspath(settings.out_dir())} "
            "— run the same command to resume"
        )
        return 130
    return 0


main = entry_point(COMMAND, one_writer(body, lambda s: s.out_dir()))

if __name__ == "__main__":
    raise SystemExit(main())
