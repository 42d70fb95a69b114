"""One labelling sheet: frames in a numbered grid, drawn with Pillow.

The number above each cell is the frame's ``id`` in ``labels.csv``; nothing else (no
video name, no step, no frame index) is written on the image, so the person labelling
cannot tell which run or training step a frame comes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Height of the strip above each cell that holds its number.
HEADER = 28
PAD = 6


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def _fit(frame: np.ndarray, cell: int):
    """The frame scaled to fit a ``cell`` square, aspect kept; small frames keep sharp pixels."""
    from PIL import Image

    image = Image.fromarray(frame)
    scale = cell / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return image.resize(size, resample)


def draw_sheet(frames: Sequence[np.ndarray], numbers: Sequence[int], cell: int = 192):
    """A grid image (``PIL.Image``) of ``frames``, cell *i* headed by ``numbers[i]``.

    The grid is as square as the count allows (16 frames: 4 × 4, 25: 5 × 5).
    """
    from PIL import Image, ImageDraw

    if len(frames) != len(numbers) or not frames:
        raise ValueError("draw_sheet needs one number per frame and at least one frame")
    cols = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / cols)
    width = cols * (cell + PAD) + PAD
    height = rows * (cell + HEADER + PAD) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(sheet)
    font = _font(HEADER - 8)
    for i, (frame, number) in enumerate(zip(frames, numbers, strict=True)):
        r, c = divmod(i, cols)
        x = PAD + c * (cell + PAD)
        y = PAD + r * (cell + HEADER + PAD)
        pen.text((x + 2, y + 3), str(number), fill="black", font=font)
        image = _fit(frame, cell)
        ox = x + (cell - image.width) // 2
        oy = y + HEADER + (cell - image.height) // 2
        pen.rectangle((x - 1, y + HEADER - 1, x + cell, y + HEADER + cell), outline="grey")
        sheet.paste(image, (ox, oy))
    return sheet
