"""Settings of ``python -m vlmrm.tune.eval`` (torch-free: ``--help`` and bad values answer at once)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vlmrm.checks import PRECISIONS, check_model_spec
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError


def _as_list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


@dataclass
class EvalSettings(ClipSettings, RunSettings):
    """Every setting of ``python -m vlmrm.tune.eval``."""

    model: str = "ViT-B-32/openai"
    """The CLIP to evaluate: ARCH/TAG, or ARCH with pretrained=<tuned .safetensors>."""
    base: str = ""
    """The untuned CLIP for the column beside (e.g. ViT-B-32/openai); empty: no comparison."""
    base_pretrained: str | None = None
    """Weights of a bare-ARCH base= (tag or file)."""
    vsr: Any = None
    """VSR jsonl file(s) to evaluate, e.g. [vsr/random/test.jsonl,vsr/zeroshot/test.jsonl]."""
    vsr_dev: Any = None
    """VSR dev file(s) the threshold is fitted on: one for all, or one per vsr file."""
    vsr_image_root: str = ""
    """Folder of the VSR images (default: each VSR file's folder)."""
    pref: Any = None
    """Held-out ranked sets / preference pairs JSONL file(s)."""
    image_root: str = ""
    """Folder the pref= and captions= image paths are relative to (default: each file's folder)."""
    captions: str = ""
    """Held-out image–caption data for Recall@1/5/10 (any format python -m vlmrm.tune.finetune reads)."""
    captions_split: str = ""
    """A fine-tuning run's split.json: evaluate only its test images (default: all of captions=)."""
    out: str = "runs/eval"
    """Output folder: metrics.json."""
    per_relation: bool = True
    """Print VSR accuracy per relation and meta-category."""

    def validate(self) -> EvalSettings:
        self.check_clip(PRECISIONS)
        if self.base:
            check_model_spec(self.base, self.base_pretrained, name="base")
        self.vsr, self.vsr_dev, self.pref = _as_list(self.vsr), _as_list(self.vsr_dev), _as_list(self.pref)
        if self.vsr_dev and len(self.vsr_dev) not in (1, len(self.vsr)):
            raise ConfigError(
                f"vsr_dev has {len(self.vsr_dev)} files for {len(self.vsr)} vsr files; give one, or one per vsr file"
            )
        if self.vsr_dev and not self.vsr:
            raise ConfigError("vsr_dev= needs vsr= (the files to evaluate)")
        if self.captions_split and not self.captions:
            raise ConfigError("captions_split= needs captions= (the data the split was made from)")
        if not (self.vsr or self.pref or self.captions):
            raise ConfigError("nothing to evaluate: give vsr=, pref= and/or captions=")
        named = [("vsr", p) for p in self.vsr] + [("vsr_dev", p) for p in self.vsr_dev]
        named += [("pref", p) for p in self.pref] + [("captions", self.captions), ("captions_split", self.captions_split)]
        for key, path in named:
            if path and not os.path.exists(path):
                raise ConfigError(f"{key}={path} does not exist")
        return self
