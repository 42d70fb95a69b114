"""Drawn images with captions (coloured shapes at named places), for the fine-tuning tests.

Imported as ``from _captions import ...`` (``tests/`` is on ``sys.path`` under pytest).
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 230),
           "yellow": (230, 230, 30), "white": (250, 250, 250)}  # fmt: skip
SHAPES = ("square", "bar", "cross")
PLACES = {"left": (16, 8), "right": (16, 24), "top": (8, 16), "bottom": (24, 16)}


def draw(colour: str, shape: str, place: str, size: int = 32) -> np.ndarray:
    """A ``shape`` of ``colour`` centred at ``place`` on a grey canvas."""
    img = np.full((size, size, 3), 90, np.uint8)
    cy, cx = PLACES[place]
    c = COLOURS[colour]
    if shape == "square":
        img[cy - 5 : cy + 5, cx - 5 : cx + 5] = c
    elif shape == "bar":
        img[cy - 2 : cy + 2, max(cx - 8, 0) : cx + 8] = c
    else:
        img[cy - 6 : cy + 6, cx - 1 : cx + 2] = c
        img[cy - 1 : cy + 2, cx - 6 : cx + 6] = c
    return img


def shapes_dataset(root: Path, fmt: str = "karpathy") -> Path:
    """Every colour × shape × place drawn once, captioned twice, as Karpathy, COCO or JSONL."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for colour in COLOURS:
        for shape in SHAPES:
            for place in PLACES:
                name = f"{colour}-{shape}-{place}.png"
                iio.imwrite(root / "img" / name, draw(colour, shape, place))
                caps = [f"a {colour} {shape} on the {place}", f"the {shape} is {colour}, at the {place}"]
                rows.append((name, caps))
    if fmt == "karpathy":
        doc = {"images": [{"filepath": "img", "filename": n, "split": "train",
                           "sentences": [{"raw": c} for c in caps]} for n, caps in rows]}  # fmt: skip
        path = root / "dataset_shapes.json"
        path.write_text(json.dumps(doc))
    elif fmt == "coco":
        images = [{"id": i, "file_name": f"img/{n}"} for i, (n, _) in enumerate(rows)]
        anns = [{"id": 10 * i + k, "image_id": i, "caption": c} for i, (_, caps) in enumerate(rows)
                for k, c in enumerate(caps)]  # fmt: skip
        path = root / "captions.json"
        path.write_text(json.dumps({"images": images, "annotations": anns}))
    else:
        path = root / "captions.jsonl"
        path.write_text("".join(json.dumps({"image": f"img/{n}", "caption": c}) + "\n" for n, caps in rows for c in caps))
    return path


def two_blocks(rng: np.random.Generator, red_first: bool, horizontal: bool, size: int = 64) -> np.ndarray:
    """A red and a blue block, side by side (``horizontal``) or stacked, at a jittered place."""
    img = np.full((size, size, 3), 90, np.uint8)
    a, b = (COLOURS["red"], COLOURS["blue"]) if red_first else (COLOURS["blue"], COLOURS["red"])
    o = int(rng.integers(-4, 5))
    p = int(rng.integers(-4, 5))
    if horizontal:
        img[20 + o : 44 + o, 4 + p : 26 + p], img[20 + o : 44 + o, 38 + p : 60 + p] = a, b
    else:
        img[4 + p : 26 + p, 20 + o : 44 + o], img[38 + p : 60 + p, 20 + o : 44 + o] = a, b
    return img


def vsr_dataset(root: Path, n_images: int, seed: int, with_rows: bool = True) -> Path:
    """A VSR-style jsonl: each image (red and blue blocks) with a true and a false row per
    relation that applies (left of / right of, above / below), plus a "with" row."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_images):
        red_first, horizontal = bool(i % 2), bool((i // 2) % 2)
        name = f"img/{seed}-{i}.png"
        iio.imwrite(root / name, two_blocks(rng, red_first, horizontal))
        rels = ("left of", "right of") if horizontal else ("above", "below")
        true_rel = rels[0] if red_first else rels[1]
        for rel in rels:
            rows.append({"image": name, "caption": f"The red block is {rel} the blue block.",
                         "relation": rel, "label": int(rel == true_rel)})  # fmt: skip
        if with_rows:
            rows.append({"image": name, "caption": "The red block is with the blue block.", "relation": "with", "label": 1})
    path = root / f"vsr-{seed}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
