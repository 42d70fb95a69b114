"""Moved to :mod:`vlmrm.datasets.imagenet`; the old names warn and still work for a release."""

from __future__ import annotations

from vlmrm.runtime.lazy import moved_attributes

__getattr__, __dir__ = moved_attributes(__name__, {
    "vlmrm.datasets.imagenet": (
        "DATA_FILE", "WNID", "generate_imagenet_classes", "imagenet_classes", "imagenet_classnames",
        "imagenet_wnid_to_name", "write_imagenet_classes",
    ),
})  # fmt: skip
