"""``python -m vlmrm.tune.build`` — ranked sets from image–caption pairs.

Reads ``{"image": ..., "caption": ...}`` rows, adds hard negatives (relation swaps,
flipped and colour-swapped images, and — with a reward CLIP — retrieved near captions)
and writes ``<out>/ranked.jsonl`` plus the augmented images. See
:func:`vlmrm.tune.data.build_ranked_sets`.

    python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=ViT-B-32/openai
    python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=none augment=flip,relation
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlmrm.errors import ConfigError, VLMRMError

BUILD_USAGE = """usage: python -m vlmrm.tune.build captions=pairs.jsonl out=folder key=value ...

Ranked sets with hard negatives from image–caption pairs (writes <out>/ranked.jsonl).
Settings (default):
"""


@dataclass
class BuildConfig:
    captions: str = ""  # JSONL of {"image", "caption"} rows (required)
    out: str = ""  # output folder (required)
    image_root: str = ""
    model: str = "ViT-B-32/openai"  # reward CLIP for retrieval; "none" to skip retrieval
    pretrained: str = ""
    device: str = "auto"
    threshold: float = 0.25  # image–caption cosine for a retrieved negative
    max_retrieved: int = 3
    max_text_similarity: float = 0.95
    augment: str = "flip,color,relation"


def build_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.tune.build``; returns the exit code."""
    from vlmrm.tune.cli import parse_dotlist, usage
    from vlmrm.tune.data import (
        BuildStats,
        build_ranked_sets,
        load_image_captions,
        write_ranked_sets,
    )

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in args):
        print(usage(BuildConfig, BUILD_USAGE))
        return 0
    try:
        cfg = parse_dotlist(BuildConfig, args, extra_keys=())
        if not cfg.captions or not cfg.out:
            raise ConfigError("captions=... and out=... are required")
        examples = load_image_captions(cfg.captions, cfg.image_root or None)
        clip = None
        if cfg.model.lower() not in ("", "none"):
            from vlmrm.models import load_clip

            device = None if cfg.device in ("", "auto") else cfg.device
            clip = load_clip(cfg.model, device=device, precision="fp32", pretrained=cfg.pretrained or None)
        augment = tuple(a.strip() for a in cfg.augment.split(",") if a.strip())
        stats = BuildStats()
        sets = build_ranked_sets(
            examples,
            Path(cfg.out) / "images",
            clip,
            threshold=cfg.threshold,
            max_retrieved=cfg.max_retrieved,
            max_text_similarity=cfg.max_text_similarity,
            augment=augment,
            stats=stats,
        )
        if not sets:
            raise ConfigError("no ranked sets could be built: " + "; ".join(stats.notes))
        path = write_ranked_sets(Path(cfg.out) / "ranked.jsonl", sets)
    except VLMRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {stats.sets} ranked sets from {stats.sources} pairs to {path} "
        f"({stats.relation_negatives} relation swaps, {stats.flip_sets} flip sets, "
        f"{stats.color_sets} colour sets, {stats.retrieved} retrieved negatives)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(build_main())
