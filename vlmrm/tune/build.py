"""``python -m vlmrm.tune.build`` — ranked sets from image–caption pairs.

Reads ``{"image": ..., "caption": ...}`` rows, adds hard negatives (relation swaps,
flipped and colour-swapped images, and — with a reward CLIP — retrieved near captions)
and writes ``<out>/ranked.jsonl`` plus the augmented images. See
:func:`vlmrm.tune.data.ranked_sets.build_ranked_sets`; settings:
:class:`vlmrm.tune.settings.BuildSettings`.

    python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=ViT-B-32/openai
    python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=none augment=flip,relation
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.errors import ConfigError
from vlmrm.runtime.lazy import moved_attributes
from vlmrm.tune.settings import BuildSettings

COMMAND = Command(
    prog="python -m vlmrm.tune.build",
    settings=BuildSettings,
    summary="Ranked sets with hard negatives from image–caption pairs (writes <out>/ranked.jsonl).",
    examples=(
        "python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=ViT-B-32/openai",
        "python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=none augment=flip,relation",
    ),
)


def build(cfg: BuildSettings) -> int:
    """Build and write the ranked sets; print a one-line summary."""
    from pathlib import Path

    from vlmrm.tune.data.images import load_image_captions
    from vlmrm.tune.data.ranked_sets import BuildStats, build_ranked_sets
    from vlmrm.tune.data.records import write_ranked_sets

    examples = load_image_captions(cfg.captions, cfg.image_root or None)
    clip = None
    if cfg.retrieval:
        from vlmrm.models import load_clip

        clip = load_clip(
            cfg.model, device=cfg.device, precision=cfg.precision, pretrained=cfg.pretrained,
            batch_size=cfg.batch_size, backend=cfg.backend,
        )
    stats = BuildStats()
    sets = build_ranked_sets(
        examples,
        Path(cfg.out) / "images",
        clip,
        threshold=cfg.threshold,
        max_retrieved=cfg.max_retrieved,
        max_text_similarity=cfg.max_text_similarity,
        augment=cfg.augmentations,
        stats=stats,
    )
    if not sets:
        raise ConfigError("no ranked sets could be built: " + "; ".join(stats.notes))
    path = write_ranked_sets(Path(cfg.out) / "ranked.jsonl", sets)
    print(
        f"wrote {stats.sets} ranked sets from {stats.sources} pairs to {path} "
        f"({stats.relation_negatives} relation swaps, {stats.flip_sets} flip sets, "
        f"{stats.color_sets} colour sets, {stats.retrieved} retrieved negatives)"
    )
    return 0


main = entry_point(COMMAND, build)

#: The settings' old name here (before every settings class ended in ``Settings``).
__getattr__, __dir__ = moved_attributes(__name__, {"vlmrm.tune.settings": ("BuildConfig",)})

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
