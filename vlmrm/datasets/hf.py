"""A local Hugging Face caption dataset, read into the same records as an annotation file.

A ``save_to_disk`` folder, a ``.parquet`` or ``.arrow`` file, or an image folder with
``metadata.jsonl``/``.csv``, with an image and a text column. The images live inside the
dataset, not on disk, so each is written once as a PNG file under a cache folder: every
record then has a path, as the records of :mod:`vlmrm.datasets.annotations` do, and the
rest of a command cannot tell the two apart. Needs the optional ``datasets`` package
(``pip install vlmrm[hf]``); nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlmrm.datasets.annotations import CaptionRecord, caption_list
from vlmrm.errors import ConfigError

#: Files (beside folders) that are read as Hugging Face datasets.
HF_SUFFIXES = (".parquet", ".arrow")


def is_hf_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read by :func:`read_hf` (a folder, or a parquet/arrow file)."""
    p = Path(os.fspath(path))
    return p.is_dir() or p.suffix in HF_SUFFIXES


def read_hf(
    path: str | os.PathLike, image_column: str, text_column: str, cache: str | os.PathLike
) -> list[CaptionRecord]:
    """One record per row; its image is written to ``cache/<row>.png`` (once) and named by
    that path (relative where ``cache`` is)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"{os.fspath(path)!r} is a Hugging Face dataset; reading it needs the datasets "
            "package: pip install 'vlmrm[hf]'"
        ) from None
    p, cache = Path(os.fspath(path)), Path(os.fspath(cache))
    if p.is_dir() and (p / "dataset_info.json").exists():
        ds = datasets.load_from_disk(os.fspath(p))
    elif p.is_dir():
        ds = datasets.load_dataset("imagefolder", data_dir=os.fspath(p), split="train")
    elif p.suffix == ".parquet":
        ds = datasets.Dataset.from_parquet(os.fspath(p))
    else:
        ds = datasets.Dataset.from_file(os.fspath(p))
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets(list(ds.values()))
    missing = [c for c in (image_column, text_column) if c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"{os.fspath(p)!r} has no column {missing[0]!r} (columns: {ds.column_names}); "
            "set image_column= and text_column="
        )
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i, row in enumerate(ds):
        file = cache / f"{i:08d}.png"
        if not file.exists():
            row[image_column].convert("RGB").save(file)
        captions = caption_list(row[text_column], f"{os.fspath(p)}: row {i}")
        out.append(CaptionRecord(os.fspath(file), tuple(captions), None, i))
    return out
