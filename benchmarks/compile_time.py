"""What ``compile=True`` costs at load on a CPU: a cold Inductor cache, then a warm one.

``load_clip(..., compile=True)`` compiles the image tower at load with a warm-up batch
(the dynamic-batch graph) and one frame (the batch-1 graph), so that no call compiles
mid-run; the first calls after the load show that. This script runs
the same child process twice with one fresh ``TORCHINDUCTOR_CACHE_DIR``: the first run
fills the cache (cold), the second finds Inductor's FX graph cache and skips code
generation and the C++ compiler (warm). Each child reports the seconds of the load (with
both compiles), the first 64-frame call, the first 1-frame call, a second 64-frame call,
and the whole process (with Python's and torch's start-up).

    python benchmarks/compile_time.py                                  # ViT-B-32 int8, 2 threads
    python benchmarks/compile_time.py --model vlmrm-tiny --precision fp32 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time, warnings
import numpy as np, torch
import vlmrm
model, precision, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
rng = np.random.default_rng(0)
frames = rng.integers(0, 256, (64, 224, 224, 3), dtype=np.uint8)
out = {}
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clip = vlmrm.load_clip(model, device="cpu", precision=precision, compile=True)
out["load"] = time.perf_counter() - t
for key, batch in (("first_64", frames), ("first_1", frames[:1]), ("second_64", frames)):
    t = time.perf_counter()
    clip.embed_images(batch)
    out[key] = time.perf_counter() - t
print(json.dumps(out))
"""


def run_child(args: argparse.Namespace, cache: str) -> dict[str, float]:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, args.model, args.precision, str(args.threads)],
        env=env, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"error: the compiling process failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process"] = time.perf_counter() - t  # with Python and torch start-up
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="load_clip spec (random weights for an architecture)")
    p.add_argument("--precision", default="int8", help="fp32 or int8 (the CPU precisions worth compiling)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the cache keeps one entry per count)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        runs = {"cold": run_child(args, cache), "warm": run_child(args, cache)}
    print(f"compile_time: {args.model} {args.precision}, {args.threads} thread(s), one fresh Inductor cache\n")
    keys = ("load", "first_64", "first_1", "second_64", "process")
    print("| cache | " + " | ".join(f"{k} s" for k in keys) + " |")
    print("|" + " --- |" * (len(keys) + 1))
    for name, out in runs.items():
        print(f"| {name} | " + " | ".join(f"{out[k]:.1f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
