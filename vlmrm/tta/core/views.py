"""Augmented views of one test image, made as batched tensor ops on the compute device.

View 0 is the centre crop (shorter side resized to ``size``, middle square) — the view the
final prediction is made on. The other views are random-resized crops of the *original*
image (area 8–100%, aspect 3/4–4/3, as torchvision's ``RandomResizedCrop``) with random
horizontal flips, as in TPT/RLCF. All crops are cut and resized in a single
``torchvision.ops.roi_align`` call: different boxes per view, and for crops larger than
``size`` each output pixel averages a grid of input samples, which antialiases the
downscale the way a box filter does (images more than twice the view size are first
shrunk with an antialiased resize, which bounds that grid at 2×2). AugMix (optional, the reference uses it only for
fine-grained datasets) is applied per view with torchvision's ``v2.AugMix``.

Views are float images in [0, 1]; each CLIP then resizes/normalises them through its own
:meth:`ClipModel.preprocess`, so policy and reward models of different input sizes share
one set of views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from vlmrm.errors import ConfigError
from vlmrm.preprocess import FrameBatch, as_frame_tensor, resize_frames

_ATTEMPTS = 10


def crop_boxes(
    height: int,
    width: int,
    n: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """``n`` random-resized-crop boxes ``(x1, y1, x2, y2)`` in pixels, ``(n, 4)`` float.

    The same distribution as ``RandomResizedCrop.get_params`` (10 tries per box, then a
    centre crop clamped to the aspect-ratio range), vectorised over ``n`` boxes.
    """
    area = float(height * width)
    u = torch.rand(n, _ATTEMPTS, generator=generator, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u)
    logr = torch.rand(n, _ATTEMPTS, generator=generator, dtype=torch.float64)
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * logr)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    w_sel = w[rows, first.clamp_min(0)]
    h_sel = h[rows, first.clamp_min(0)]
    # Fallback: the whole image, cropped to the allowed aspect-ratio range.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = height, round(height * ratio[1])
    else:
        fw, fh = width, height
    bad = first < 0
    w_sel = torch.where(bad, torch.full_like(w_sel, fw), w_sel)
    h_sel = torch.where(bad, torch.full_like(h_sel, fh), h_sel)
    fy = torch.rand(n, generator=generator, dtype=torch.float64)
    fx = torch.rand(n, generator=generator, dtype=torch.float64)
    top = torch.floor(fy * (height - h_sel + 1)).clamp(max=height - h_sel)
    left = torch.floor(fx * (width - w_sel + 1)).clamp(max=width - w_sel)
    top = torch.where(bad, torch.full_like(top, (height - fh) // 2), top)
    left = torch.where(bad, torch.full_like(left, (width - fw) // 2), left)
    return torch.stack([left, top, left + w_sel, top + h_sel], dim=1).float()


def _augmix(views: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    from torchvision.transforms import v2

    aug = v2.AugMix(severity=1)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    out = torch.empty_like(views)
    with torch.random.fork_rng(devices=[views.device] if views.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(views.shape[0]):
            u8 = (views[i] * 255.0).round().clamp(0, 255).to(torch.uint8)
            out[i] = aug(u8).float() / 255.0
    return out


def make_views(
    image: FrameBatch,
    n_views: int,
    size: int,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    flip: bool = True,
    augmix: bool = False,
) -> torch.Tensor:
    """The centre crop and ``n_views - 1`` random views of one image → ``(n_views, 3, size, size)``.

    Args:
        image: ``(H, W, 3)`` or ``(3, H, W)`` uint8 (or float in [0, 1]), NumPy or torch.
        n_views: total number of views including the centre crop (64 in RLCF).
        size: output side in pixels.
        generator: CPU generator for the random crops/flips (seed it for reproducibility).
        device: where to make the views (default: the image's device).
        augmix: also apply AugMix to the random views.
    """
    if int(n_views) < 1:
        raise ConfigError(f"views must be a positive integer, got {n_views}")
    x = as_frame_tensor(image)
    if x.shape[0] != 1:
        raise ConfigError(f"make_views takes one image, got a batch of {x.shape[0]}")
    if device is not None:
        x = x.to(device)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    centre = resize_frames(x, size, "center_crop").clamp(0.0, 1.0)
    n_rand = int(n_views) - 1
    if n_rand == 0:
        return centre
    h, w = x.shape[-2:]
    boxes = crop_boxes(h, w, n_rand, gen)
    # Crops of a much larger image would average dozens of samples per output pixel in
    # roi_align; an antialiased pre-shrink to twice the view size bounds that at 2×2.
    shrink = min(h, w) / (2 * size)
    if shrink > 1.0:
        new_h, new_w = max(1, round(h / shrink)), max(1, round(w / shrink))
        x = F.interpolate(
            x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
        )
        boxes = boxes * torch.tensor([new_w / w, new_h / h, new_w / w, new_h / h])
    boxes = boxes.to(x.device)
    rois = torch.cat([torch.zeros(n_rand, 1, device=x.device), boxes], dim=1)
    views = roi_align(
        x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
    if flip:
        mask = (torch.rand(n_rand, generator=gen) < 0.5).to(x.device)
        views = torch.where(mask.view(-1, 1, 1, 1), views.flip(-1), views)
    views = views.clamp(0.0, 1.0)
    if augmix:
        views = _augmix(views, gen)
    return torch.cat([centre, views])
