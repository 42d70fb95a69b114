"""Frames → CLIP input tensors, as batched tensor ops on the model's device.

Frames arrive as ``uint8`` arrays straight from ``env.render()``. They stay ``uint8``
until they are on the compute device (a quarter of the bytes to copy), and the whole
batch is resized, cropped and normalised there in one call per op — no PIL, no
per-frame Python loop.

Non-square frames: with ``resize_mode="squash"`` (the default, what the reference
VLM-RM implementation does) the frame is resized to ``size × size`` ignoring its aspect
ratio, so the whole frame is seen but shapes are stretched. ``"center_crop"`` keeps the
aspect ratio (shorter side to ``size``) and cuts the middle square, which is how CLIP
was trained but drops the sides of wide frames. ``"pad"`` keeps the aspect ratio and the
whole frame by padding the short side with black before resizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from vlmrm.errors import ConfigError

ResizeMode = Literal["squash", "center_crop", "pad"]
RESIZE_MODES: tuple[str, ...] = ("squash", "center_crop", "pad")

FrameBatch = np.ndarray | torch.Tensor


def as_frame_tensor(frames: FrameBatch | Sequence[np.ndarray]) -> torch.Tensor:
    """Validate frames and return them as an ``(N, 3, H, W)`` tensor view (no copy when possible).

    Accepts ``(H, W, 3)``, ``(N, H, W, 3)`` or ``(N, 3, H, W)`` arrays, NumPy or torch,
    ``uint8`` in [0, 255] or floating point in [0, 1], or a list of equally sized
    ``(H, W, 3)`` frames.
    """
    if isinstance(frames, (list, tuple)):
        if len(frames) == 0:
            raise ConfigError("got an empty list of frames; pass at least one (H, W, 3) frame")
        shapes = {tuple(np.shape(f)) for f in frames}
        if len(shapes) > 1:
            raise ConfigError(
                f"frames in a list must all have the same shape, got {sorted(shapes)}; "
                "render every env at the same width/height"
            )
        frames = np.stack([np.asarray(f) for f in frames])
    if isinstance(frames, np.ndarray):
        if frames.dtype == object:
            raise ConfigError("frames must be a numeric array, got dtype=object")
        x = torch.from_numpy(np.ascontiguousarray(frames))
    elif isinstance(frames, torch.Tensor):
        x = frames
    else:
        raise ConfigError(
            f"frames must be a NumPy array or torch tensor of shape (N, H, W, 3), got {type(frames).__name__}"
        )
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ConfigError(
            f"frames must be uint8 in [0, 255] (as returned by env.render()) or float in [0, 1], "
            f"got dtype {x.dtype}; convert with frames.astype(np.uint8)"
        )
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ConfigError(
            f"frames must have shape (H, W, 3), (N, H, W, 3) or (N, 3, H, W), got {tuple(x.shape)}"
        )
    if x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    elif x.shape[1] != 3:
        hint = " (RGBA? drop the alpha channel with frames[..., :3])" if 4 in (x.shape[1], x.shape[-1]) else ""
        raise ConfigError(
            f"frames must have 3 colour channels, last (N, H, W, 3) or second (N, 3, H, W); "
            f"got shape {tuple(x.shape)}{hint}"
        )
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ConfigError(f"frames have zero height or width: shape {tuple(x.shape)}")
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ConfigError("frames contain NaN or infinite values; check the renderer output")
        lo, hi = float(x.min()) if x.numel() else 0.0, float(x.max()) if x.numel() else 0.0
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ConfigError(
                f"float frames must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "pass uint8 frames in [0, 255] instead"
            )
    return x


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    # antialias=True is what torchvision's tensor Resize does, so fp32 output matches the reference.
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def resize_frames(x: torch.Tensor, size: int, mode: str = "squash") -> torch.Tensor:
    """Resize an ``(N, 3, H, W)`` float batch to ``(N, 3, size, size)`` with the given mode."""
    if mode not in RESIZE_MODES:
        raise ConfigError(f"unknown resize_mode {mode!r}; choose one of {RESIZE_MODES}")
    h, w = x.shape[-2:]
    if mode == "squash" or h == w:
        return _resize(x, (size, size))
    if mode == "center_crop":
        # Shorter side to `size`, the same rounding as torchvision's Resize(int).
        if h < w:
            new_h, new_w = size, int(size * w / h)
        else:
            new_h, new_w = int(size * h / w), size
        x = _resize(x, (new_h, new_w))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return x[..., top : top + size, left : left + size]
    # pad: black bars on the short side, centred, then a square resize.
    side = max(h, w)
    pad_h, pad_w = side - h, side - w
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return _resize(x, (size, size))


def preprocess(
    frames: torch.Tensor,
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    resize_mode: str = "squash",
    fast_resize: bool = False,
) -> torch.Tensor:
    """Turn a validated ``(N, 3, H, W)`` frame tensor into normalised CLIP input on ``device``.

    By default the uint8 → float conversion (``/255``), bicubic antialiased resize and
    normalisation reproduce the reference implementation's torchvision pipeline to float
    precision. ``fast_resize`` resizes the uint8 frames first (on CPU, in channels-last
    layout: about 15× faster than resizing float frames; each pixel is then rounded to a
    whole 1/255 step, far below what moves a reward) and converts only the small result.
    """
    if frames.device != device:
        if device.type == "cuda" and frames.device.type == "cpu":
            frames = frames.pin_memory().to(device, non_blocking=True)
        else:
            frames = frames.to(device)
    if fast_resize and frames.dtype == torch.uint8 and device.type == "cpu":
        x = resize_frames(frames.contiguous(memory_format=torch.channels_last), size, resize_mode)
        x = x.float() / 255.0
    else:
        x = frames.float()
        if frames.dtype == torch.uint8:
            x = x / 255.0
        x = resize_frames(x, size, resize_mode)
    m = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.to(dtype).contiguous(memory_format=torch.channels_last)
