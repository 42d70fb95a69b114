"""The data of one tuning run: train and eval sets, VSR rows, the probe and training units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.tune.data.images import load_image_captions
from vlmrm.tune.data.records import (
    Item,
    RankedSet,
    VSRExample,
    load_ranked_sets,
    ranking_to_pairs,
    split_sets,
)
from vlmrm.tune.settings import PAIRWISE, TuneSettings
from vlmrm.tune.vsr.rows import load_vsr


@dataclass
class RunData:
    """Everything a run reads from its data files, loaded once.

    ``units`` are what batches are drawn from: preference pairs (pairwise losses),
    distinct image–caption positives (``contrastive``) or ranked sets (the rest).
    """

    train_sets: list[RankedSet]
    eval_sets: list[RankedSet]
    vsr: list[VSRExample] = field(default_factory=list)
    probe: list[Item] = field(default_factory=list)
    units: list[Any] = field(default_factory=list)
    vsr_dev: list[VSRExample] = field(default_factory=list)

    def all_items(self) -> list[Item]:
        """Distinct items of the train and eval sets, in order (the reference table's keys)."""
        items = [it for s in (*self.train_sets, *self.eval_sets) for it in s.items()]
        return list(dict.fromkeys(items))


def _default_probe(sets: list[RankedSet], size: int) -> list[Item]:
    """The best pair of each image-anchored set; empty unless it spans two images."""
    probe = list(dict.fromkeys(s.item(s.top()[0]) for s in sets if s.anchor_kind == "image"))
    return probe[:size] if len({p for p, _ in probe}) >= 2 else []


def training_units(cfg: TuneSettings, train_sets: list[RankedSet]) -> list[Any]:
    """The units batches are drawn from, for ``cfg.loss``."""
    if cfg.loss in PAIRWISE:
        pairs = ranking_to_pairs(train_sets, cfg.pairs, cfg.pair_weighting)
        if not pairs:
            raise ConfigError(f"{cfg.data!r} yields no preference pairs")
        return pairs
    if cfg.loss == "contrastive":
        positives = list(dict.fromkeys(s.item(i) for s in train_sets for i in s.top()))
        if len(positives) < 2:
            raise ConfigError("contrastive fine-tuning needs at least 2 distinct image–caption pairs")
        return positives
    return list(train_sets)


def load_run_data(cfg: TuneSettings) -> RunData:
    """Read and split the data, VSR rows and probe of ``cfg``; each problem is one ConfigError."""
    root = cfg.image_root or None
    sets = load_ranked_sets(cfg.data, root)
    if cfg.eval_data:
        train_sets, eval_sets = sets, load_ranked_sets(cfg.eval_data, root)
    else:
        train_sets, eval_sets = split_sets(sets, cfg.eval_fraction, cfg.seed)
    if not train_sets:
        raise ConfigError(f"no training data left after the eval split of {cfg.data!r}")
    vsr = load_vsr(cfg.vsr, cfg.vsr_image_root or None) if cfg.vsr else []
    if cfg.probe:
        probe = load_image_captions(cfg.probe, root)[: cfg.probe_size]
    else:
        probe = _default_probe(eval_sets or train_sets, cfg.probe_size)
    vsr_dev = load_vsr(cfg.vsr_dev, cfg.vsr_image_root or None) if cfg.vsr_dev else []
    return RunData(train_sets, eval_sets, vsr, probe, training_units(cfg, train_sets), vsr_dev)
