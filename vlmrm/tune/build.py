"""``python -m vlmrm.tune.build`` — ranked sets from image–caption pairs.

Reads ``{"image": ..., "caption": ...}`` rows, adds hard negatives (relation swaps,
flipped and colour-swapped images, and — with a reward CLIP — retrieved near captions)
and writes ``<out>/ranked.jsonl`` plus the augmented images. See
:func:`vlmrm.tune.build_sets.build_ranked_sets`.

    python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=ViT-B-32/openai
    python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=none augment=flip,relation
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmrm.checks import check_int, check_out_dir
from vlmrm.cli.args import Command, entry_point
from vlmrm.cli.vocabulary import ClipSettings
from vlmrm.errors import ConfigError
from vlmrm.tune.augment import AUGMENTATIONS  # NumPy only: --help stays torch-free


@dataclass
class BuildConfig(ClipSettings):
    """Every setting of ``python -m vlmrm.tune.build``."""

    captions: str = ""
    """JSONL of {"image", "caption"} rows (required)."""
    out: str = ""
    """Output folder (required): ranked.jsonl and images/."""
    image_root: str = ""
    """Folder image paths are relative to (default: the captions file's folder)."""
    model: str = "ViT-B-32/openai"
    """Reward CLIP for retrieval (ARCH/TAG, ARCH with pretrained=, vlmrm-tiny); none to skip retrieval."""
    precision: str = "fp32"
    """Precision of the retrieval CLIP (see --help of any command); fp32 keeps the cosine
    threshold on the reference scale."""
    threshold: float = 0.25
    """Image–caption cosine for a retrieved negative."""
    max_retrieved: int = 3
    """Retrieved negatives per image at most."""
    max_text_similarity: float = 0.95
    """Text–text cosine above which a retrieved caption counts as a paraphrase (never a negative)."""
    augment: str = "flip,color,relation"
    """Comma list of flip, color, relation."""
    threads: Any = "auto"
    """CPU threads of torch: auto (half the cores) or N; printed once when the command starts."""

    def validate(self) -> BuildConfig:
        """Check the settings without torch; each problem is one ConfigError line."""
        if not self.captions or not self.out:
            raise ConfigError("captions=... and out=... are required")
        check_out_dir(self.out)
        if self.retrieval:
            self.check_clip()
        self.max_retrieved = check_int("max_retrieved", self.max_retrieved, 0)
        bad = [a for a in self.augmentations if a not in AUGMENTATIONS]
        if bad:
            raise ConfigError(f"unknown augmentation(s) {bad}; choose from {AUGMENTATIONS}")
        return self

    @property
    def retrieval(self) -> bool:
        """Whether a reward CLIP retrieves negatives (``model=none`` turns it off)."""
        return self.model.strip().lower() not in ("", "none")

    @property
    def augmentations(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.augment.split(",") if a.strip())


COMMAND = Command(
    prog="python -m vlmrm.tune.build",
    settings=BuildConfig,
    summary="Ranked sets with hard negatives from image–caption pairs (writes <out>/ranked.jsonl).",
    examples=(
        "python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=ViT-B-32/openai",
        "python -m vlmrm.tune.build captions=pairs.jsonl out=data/ranked model=none augment=flip,relation",
    ),
)


def build(cfg: BuildConfig) -> int:
    """Build and write the ranked sets; print a one-line summary."""
    from pathlib import Path

    from vlmrm.tune.build_sets import BuildStats, build_ranked_sets
    from vlmrm.tune.records import write_ranked_sets
    from vlmrm.tune.vsr import load_image_captions

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

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
