"""Test-time adaptation of CLIP with CLIP reward (RLCF), from Python.

A small CLIP (the policy) classifies each test image after adapting to it for 3 steps
with feedback from a larger CLIP (the reward model), then forgets. Compares zero-shot
and adapted accuracy on a folder of class sub-folders.

    python examples/tta_classify.py /data/imagenet-a                       # ViT-B/16 ← ViT-L/14
    python examples/tta_classify.py /data/imagenet-a --mode image --limit 200
    python examples/tta_classify.py --smoke                                # synthetic data, vlmrm-tiny

The command-line equivalent, with results file, resume and progress bar:
``python -m vlmrm.tta task=classify data=/data/imagenet-a mode=prompt``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import vlmrm
from vlmrm.runtime.images import load_image
from vlmrm.tta import ClassificationTTA, CLIPFeedback, load_class_folders


def synthetic_folders(root: Path) -> Path:
    """Three classes of coloured noise, four images each (for a smoke run without data)."""
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for c, colour in {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            img = np.clip(np.array(colour) + rng.normal(0, 40, size=(64, 80, 3)), 0, 255).astype(
                np.uint8
            )
            iio.imwrite(root / c / f"{i}.png", img)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", help="folder with one sub-folder of images per class")
    ap.add_argument("--model", default="ViT-B-16/openai", help="the CLIP that adapts (policy)")
    ap.add_argument("--reward-model", default="ViT-L-14/openai", help="the CLIP giving feedback")
    ap.add_argument("--mode", choices=["prompt", "image"], default="prompt")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--smoke", action="store_true", help="synthetic data and vlmrm-tiny models")
    args = ap.parse_args()

    if args.smoke:
        args.data = str(synthetic_folders(Path(tempfile.mkdtemp()) / "colours"))
        args.model = args.reward_model = "vlmrm-tiny"
    if not args.data:
        ap.error("give a data folder, or --smoke")

    data = load_class_folders(args.data)
    # The policy is adapted, so it keeps fp32 weights ("amp": fp32 weights under autocast);
    # the frozen reward model may use fp16 on a GPU.
    policy = vlmrm.load_clip(args.model, precision="fp32", resize_mode="center_crop")
    reward = (
        policy
        if args.reward_model == args.model
        else vlmrm.load_clip(args.reward_model, resize_mode="center_crop")
    )
    tta = ClassificationTTA(policy, CLIPFeedback(reward), data.classnames, mode=args.mode)

    n = len(data) if args.limit is None else min(args.limit, len(data))
    zs_hits = hits = 0
    start = time.perf_counter()
    for i in range(n):
        _, label = data.samples[i]
        result = tta.adapt(load_image(data.path(i)), seed=i)
        zs_hits += result.zeroshot_pred == label
        hits += result.pred == label
    seconds = (time.perf_counter() - start) / max(n, 1)
    print(f"{n} images, {len(data.classnames)} classes, {seconds:.2f} s/image")
    print(
        f"zero-shot top-1 {100 * zs_hits / n:.1f}%   RLCF ({args.mode}) top-1 {100 * hits / n:.1f}%"
    )


if __name__ == "__main__":
    main()
