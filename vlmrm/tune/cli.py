"""``python -m vlmrm.tune key=value ...`` — preference tuning from the command line.

Settings are the fields of :class:`vlmrm.tune.settings.TuneSettings` (their docstrings are
the ``--help``); ``config=run.yaml`` reads a YAML file of them first. Any bad setting ends
the run with one ``error: ...`` line and exit code 2 before torch is imported; an
interrupted run (Ctrl-C, SIGTERM) saves a checkpoint and exits with 130.
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.runtime.lock import one_writer
from vlmrm.tune.settings import TuneSettings

COMMAND = Command(
    prog="python -m vlmrm.tune",
    settings=TuneSettings,
    summary=(
        "Preference-tune a CLIP reward model (DPO/IPO/hinge/BT/listwise/contrastive/REINFORCE). "
        "The tuned weights load with load_clip(ARCH, pretrained=<out>/model.safetensors); run the "
        "same command again to resume an interrupted run."
    ),
    examples=(
        "python -m vlmrm.tune loss=dpo data=ranked.jsonl model=ViT-B-32/openai beta=0.1",
        "python -m vlmrm.tune loss=ipo data=ranked.jsonl lock=image train_params=attn_in_proj",
        "python -m vlmrm.tune loss=reinforce data=ranked.jsonl kl_coef=0.1 num_samples=8",
        "python -m vlmrm.tune data=ranked.jsonl steps=0 vsr=vsr/test.jsonl   # evaluate only",
    ),
)


def tune(cfg: TuneSettings) -> int:
    """Run the tuner; exit status 130 when a signal stopped it (a checkpoint was saved)."""
    from vlmrm.tune.trainer import train

    return 130 if train(cfg).interrupted else 0


main = entry_point(COMMAND, one_writer(tune, lambda cfg: cfg.out))

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
