"""Moved to :mod:`vlmrm.datasets.coop` (the reader) and :mod:`vlmrm.tta.settings` (the
fine-grained preset); the old names warn and still work for a release."""

from __future__ import annotations

from vlmrm.runtime.lazy import moved_attributes

__getattr__, __dir__ = moved_attributes(__name__, {
    "vlmrm.datasets.coop": (
        "AIRCRAFT_CLASSES", "AIRCRAFT_LIST", "COOP_SPLIT_FILES", "SPLITS", "aircraft_folder",
        "imagenet_folder", "is_coop_dataset", "is_coop_split", "load_aircraft", "load_coop_dataset",
        "load_coop_imagenet", "load_coop_split",
    ),
    "vlmrm.tta.settings": ("FINEGRAINED_PRESET",),
})  # fmt: skip
