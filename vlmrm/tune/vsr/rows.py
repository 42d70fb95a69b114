"""VSR (Visual Spatial Reasoning) rows: ``image, caption, relation, label`` in JSONL.

VSR is both an evaluation (held-out accuracy, per relation) and a source of preference data
(``python -m vlmrm.tune.vsr_pairs``); both read its rows through :func:`load_vsr`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError
from vlmrm.tune.data.records import VSRExample, _resolve_image, _text, _where, read_jsonl


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise ConfigError(f"{where}: 'label' must be 0/1 or true/false, got {value!r}")


def load_vsr(
    path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    check_files: bool = True,
) -> list[VSRExample]:
    """Read VSR jsonl (``image, caption, relation, label``; extra VSR fields are ignored).

    VSR ships image file names (COCO) separately from the jsonl: pass the image folder as
    ``image_root`` (default: the jsonl's folder).
    """
    root = Path(image_root) if image_root is not None else Path(os.path.abspath(path)).parent
    out = []
    for n, obj in read_jsonl(path):
        where = _where(path, n)
        missing = [k for k in ("image", "caption", "relation", "label") if k not in obj]
        if missing:
            raise ConfigError(f"{where}: VSR row is missing {missing}; rows need image, caption, relation, label")
        out.append(
            VSRExample(
                image=_resolve_image(obj["image"], root, where, "image", check_files),
                caption=_text(obj["caption"], where, "caption"),
                relation=_text(obj["relation"], where, "relation"),
                label=_label(obj["label"], where),
            )
        )
    if not out:
        raise ConfigError(f"VSR file {os.fspath(path)!r} has no rows")
    return out
