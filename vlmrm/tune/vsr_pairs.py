"""``python -m vlmrm.tune.vsr_pairs vsr=train.jsonl out=pairs.jsonl`` — preference data from VSR.

Each VSR row whose relation has an excluding opposite (:mod:`vlmrm.tune.vsr.relations`)
becomes a ranked set of two for its image: the true caption over its relation-swapped
twin. The output is what ``python -m vlmrm.tune data=`` reads, so "tune on VSR train,
evaluate on VSR test" is two commands (see docs/tuning.md).
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.errors import ConfigError
from vlmrm.tune.settings import VSRPairsSettings

COMMAND = Command(
    prog="python -m vlmrm.tune.vsr_pairs",
    settings=VSRPairsSettings,
    summary="Build preference pairs (true caption vs its relation-swapped twin) from VSR rows.",
    examples=(
        "python -m vlmrm.tune.vsr_pairs vsr=vsr/random/train.jsonl image_root=coco/images out=vsr_pairs.jsonl",
    ),
)


def body(cfg: VSRPairsSettings) -> int:
    from vlmrm.tune.data.records import write_ranked_sets
    from vlmrm.tune.vsr.relations import vsr_preference_sets
    from vlmrm.tune.vsr.rows import load_vsr

    rows = load_vsr(cfg.vsr, cfg.image_root or None, check_files=cfg.check_files)
    sets, counts = vsr_preference_sets(rows, cfg.false_rows)
    if not sets:
        raise ConfigError(f"no VSR row of {cfg.vsr!r} has a relation with an opposite; nothing to write")
    write_ranked_sets(cfg.out, sets)
    print(f"{counts['sets']} pairs from {counts['rows']} VSR rows → {cfg.out} "
          f"({counts['no_opposite']} rows without an opposite relation, "
          f"{counts['false_skipped']} false rows left out)")  # fmt: skip
    return 0


main = entry_point(COMMAND, body)

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
