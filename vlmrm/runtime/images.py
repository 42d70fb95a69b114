"""Image files and arrays → ``(H, W, 3)`` RGB ``uint8``: the one conversion every reader uses.

Video frames, dataset images (tuning, TTA) and PNG frame folders all go through
:func:`to_rgb_uint8`, so a 16-bit PNG gives the same pixels whichever command reads it:
grey is repeated to three channels, alpha is dropped, unsigned integers deeper than 8 bits
are scaled by ``round(x · 255 / max)``, signed integers must hold 8-bit values, and floats
in [0, 1] become ``round(x · 255)``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError


def to_rgb_uint8(image: Any, where: str = "image") -> np.ndarray:
    """One decoded image or frame (NumPy or torch) → contiguous ``(H, W, 3)`` uint8.

    Raises :class:`~vlmrm.errors.ConfigError` naming ``where`` for shapes and dtypes that
    are not an image.
    """
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4) or 0 in a.shape[:2]:
        raise ConfigError(f"{where}: expected an (H, W, 3) RGB image, got shape {a.shape}")
    a = np.repeat(a[:, :, :1], 3, axis=2) if a.shape[-1] in (1, 2) else a[:, :, :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return np.ascontiguousarray(a.astype(np.uint8) * 255)
    if np.issubdtype(a.dtype, np.unsignedinteger):  # 16-bit PNGs and deeper: scale by the depth
        scaled = np.rint(a.astype(np.float64) * (255.0 / np.iinfo(a.dtype).max))
        return np.ascontiguousarray(scaled.astype(np.uint8))
    if np.issubdtype(a.dtype, np.integer):  # e.g. int64 tensors of 8-bit pixel values
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ConfigError(
                f"{where}: signed integer pixels must lie in [0, 255] (dtype {a.dtype}); pass uint8"
            )
        return np.ascontiguousarray(a.astype(np.uint8))
    if np.issubdtype(a.dtype, np.floating):
        return np.ascontiguousarray(np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))
    raise ConfigError(f"{where}: pixels must be uint8 (or float in [0, 1]), got dtype {a.dtype}")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB; an animated file gives its first frame.

    Any decoder failure is one :class:`~vlmrm.errors.ConfigError` naming the file.
    """
    import imageio.v3 as iio

    where = f"image {os.fspath(path)!r}"
    try:
        with warnings.catch_warnings():  # a failed decode tries every plugin; some warn on import
            warnings.simplefilter("ignore", DeprecationWarning)
            img = np.asarray(iio.imread(os.fspath(path), index=0))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user problem
        raise ConfigError(f"cannot read {where}: {str(exc).splitlines()[0][:200]}") from None
    return to_rgb_uint8(img, where)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB image losslessly as PNG (creating the folder)."""
    import imageio.v3 as iio

    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    # Encoded in memory and written here: imageio's own file handle, on a full disk, fails
    # again when it is garbage-collected ("Exception ignored in ... __del__" after our error).
    data = iio.imwrite("<bytes>", to_rgb_uint8(image, f"image for {os.fspath(path)!r}"), extension=".png")
    with open(path, "wb") as fh:
        fh.write(data)
