"""Memory per stored frame in episode-batched relabelling, against the reference's way.

The reference implementation appends every rendered frame (uint8, render size) to a Python
list and, at relabelling time, stacks the list into one tensor (a second copy) before
scoring. ``vlmrm.agents.EpisodeRelabeller`` resizes each step's frames to the CLIP input
size as uint8 when it stores them, into one preallocated array that scoring reads as a
view, so an episode costs ``S·S·3`` bytes per frame.

Each mode runs in a fresh subprocess that stores one batch of episodes and reports its
peak RSS increase, divided by the number of frames; one run prints both and the ratio.

    python benchmarks/relabel_memory.py --render 480x480 --clip-size 224 --frames 800
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(mode: str, h: int, w: int, size: int, n: int) -> dict:
    import numpy as np
    import torch

    from vlmrm.agents.relabel import resize_uint8

    rng = np.random.default_rng(0)
    template = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    base = _peak_rss_bytes()
    if mode == "reference":
        frames = [template.copy() for _ in range(n)]  # one rendered frame per step, kept as is
        stacked = torch.from_numpy(np.stack(frames))  # what scoring needs: one tensor
        stored = sum(f.nbytes for f in frames)
        del stacked
    else:
        # The relabeller's own storage: each step's frames resized at storage and written
        # into its preallocated array; scoring reads a view of it.
        from vlmrm.agents.relabel import EpisodeRelabeller

        relabeller = EpisodeRelabeller(lambda f: np.zeros(len(f)), frame_size=size, max_pending_frames=n)
        for _ in range(n):
            relabeller._store(resize_uint8(template[None].copy(), size))
            relabeller._pending_frames += 1  # what committing a stored step does
        frames = relabeller._frames[: relabeller.pending_frames]  # what scoring reads
        stored = frames.nbytes
    peak = _peak_rss_bytes() - base
    return {"mode": mode, "stored_bytes_per_frame": stored / n, "peak_bytes_per_frame": peak / n}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--render", default="480x480", help="HxW of rendered frames")
    p.add_argument("--clip-size", type=int, default=224, help="CLIP input size (stored frame side)")
    p.add_argument(
        "--frames", type=int, default=800, help="frames per relabelling batch (n_envs x episode)"
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.render.lower().split("x"))
    if args.child:
        print(json.dumps(child(args.child, h, w, args.clip_size, args.frames)))
        return
    results = {}
    for mode in ("reference", "vlmrm"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--render",
                args.render,
                "--clip-size",
                str(args.clip_size),
                "--frames",
                str(args.frames),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{args.frames} frames rendered at {h}x{w}, CLIP input {args.clip_size}x{args.clip_size}")
    for mode, r in results.items():
        print(
            f"{mode:<10} stored {r['stored_bytes_per_frame'] / 1024:8.1f} KiB/frame   "
            f"peak RSS {r['peak_bytes_per_frame'] / 1024:8.1f} KiB/frame"
        )
    ratio = results["reference"]["peak_bytes_per_frame"] / max(
        results["vlmrm"]["peak_bytes_per_frame"], 1
    )
    print(f"peak memory per frame, reference / vlmrm: {ratio:.1f}x")


if __name__ == "__main__":
    main()
