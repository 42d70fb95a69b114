"""Reward throughput (frames/s) of the toolkit's path against a reference-style baseline.

The baseline is written the way the reference VLM-RM implementation computes rewards:
uint8 frames converted to float32 on the host, torchvision ``Resize``/``CenterCrop``/
``Normalize`` on the float batch, the fp32 image tower (fp16 autocast on CUDA), then the
projection reward with an explicit D×D matrix. Both run in one process on the same
frames, so the printed ratio is meaningful even on a noisy machine. Also printed: the rank
fidelity of the toolkit's rewards to fp32 rewards (Spearman) and the max |Δreward|.

    python benchmarks/reward_throughput.py --model ViT-B-32 --frame-size 480x480 --batch-size 64
    python benchmarks/reward_throughput.py --model ViT-B-32,ViT-L-14 --frame-size 224x224,480x480,400x600 \
        --batch-size 1,16,256,1024 --precision fp16          # a sweep: one table row per setting
    python benchmarks/reward_throughput.py --model ViT-B-32 --batch-size 1024 --precision fp16 --compile true
    python benchmarks/reward_throughput.py --precision int8 --load 0,1 --threads auto,2   # idle and loaded
    python benchmarks/reward_throughput.py --backend torch,openvino --precision fp32,int8 \
        --frame-size 224x224,480x480 --load 0,1          # every CPU path in one run (issue table)

``--backend torch,openvino`` (the ``openvino`` extra) runs each precision on both tower
backends; ``int8`` on OpenVINO is calibrated on frames drawn apart from the fidelity frames.
``--precision auto`` shows what ``load_clip(precision="auto")`` picks on this CPU (it
measures once and caches the choice; ``prec`` then names the path it picked). The CPU
(model name and its int8-relevant flags) and the load are printed with the table.

``--load N`` keeps N busy processes (one spinning core each) running during every
measurement, the baseline's included, as env worker processes do during training;
``--threads`` sets torch's thread count for both paths (``auto``: the trainer's policy,
the load counted as env workers, see ``vlmrm.agents.config.torch_threads``).

Columns: the frames per reward call (``batch``) and per tower call of the toolkit
(``chunk``; the baseline, like the reference, runs the whole batch at once); frames/s of
the reference-style baseline and of the toolkit, their ratio, the bare
image tower's images/s on already-normalised input (what the rest of the path costs), the
tower's achieved TFLOP/s (FLOPs counted with torch's FlopCounterMode) and, with
``--peak-tflops``, the fraction of the device's peak; then the rank fidelity (Spearman) of
the toolkit's rewards to fp32 rewards on a fixed set of 64 frames, with max |Δreward| and
the spread (std) of the rewards across those frames. ``prec`` ends in ``+c`` when the
toolkit's tower is compiled (``--compile``; the bare-tower column is then compiled too).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from scipy.stats import spearmanr
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize

import vlmrm


def reference_rewards(clip: vlmrm.ClipModel, reward: vlmrm.CLIPReward, frames: torch.Tensor) -> torch.Tensor:
    size = clip.image_size
    transform = Compose(
        [
            Resize((size, size), interpolation=InterpolationMode.BICUBIC),
            CenterCrop(size),
            Normalize(mean=clip.mean, std=clip.std),
        ]
    )
    x = frames.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # the reference's float frames
    with torch.no_grad(), torch.autocast("cuda", enabled=clip.device.type == "cuda"):
        x = transform(x.to(clip.device))
        emb = clip.model.encode_image(x, normalize=True).float()
    g = reward.goal_embedding[None].float()
    d = reward.direction[None].float()
    proj = d.T @ d / d.norm() ** 2
    m = reward.alpha * proj + (1 - reward.alpha) * torch.eye(proj.shape[0], device=proj.device)
    return 1 - (((emb - g) @ m).norm(dim=-1) ** 2) / 2


def counts(text: str) -> list[int]:
    """``"0,1"`` → ``[0, 1]``: a comma list of non-negative integers (``--load``)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = [-1]
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers separated by commas, got {text!r}")
    return values


def thread_counts(text: str) -> list[str]:
    """``"auto,2"``: ``auto`` or positive integers, comma-separated (``--threads``)."""
    values = [v.strip() for v in text.split(",")]
    for v in values:
        if v != "auto" and not (v.isdigit() and int(v) > 0):
            raise argparse.ArgumentTypeError(f"expected 'auto' or positive integers separated by commas, got {text!r}")
    return values


@contextlib.contextmanager
def busy_cores(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` processes that each keep one core busy until the block ends."""
    # Each spins until its parent is gone, so none outlives a killed benchmark.
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        time.sleep(0.2 if n else 0)  # let them start spinning before the timing starts
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(fns: dict[str, object], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Best-of-``repeats`` seconds per call, the candidates run in turn so noise hits all alike."""
    outs = {name: fn() for name, fn in fns.items()}  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            outs[name] = fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, outs


def make_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random scenes (not white noise), so that frames differ like rendered ones do."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 3, 12, 12), generator=gen, dtype=torch.uint8).float()
    x = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def image_tower_gflops(clip: vlmrm.ClipModel) -> float:
    """GFLOPs of one image through the tower, counted by torch (a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, 3, clip.image_size, clip.image_size), dtype=clip.dtype, device=clip.device)
    # In eval mode nn.MultiheadAttention takes a fused fast path the counter does not see;
    # train mode (CLIP has no dropout, so the same maths) routes through counted matmuls.
    clip.model.train()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            clip.model.encode_image(x)
    finally:
        clip.model.eval()
    return counter.get_total_flops() / 1e9


def load_pair(
    args: argparse.Namespace, model: str, precision: str, compile: str, backend: str = "auto",
    threads: int | None = None,
) -> tuple:
    """The fp32 reference CLIP and the toolkit's CLIP at ``precision``, loaded once per setting."""
    extra = {}
    if backend == "openvino" and precision == "int8":
        # calibration frames drawn apart from the timing and fidelity frames (seeds 0, 1)
        extra["calibration"] = make_frames(64, 240, 240, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_clip = vlmrm.load_clip(model, device=args.device, precision="fp32", backend="torch", threads=threads)
        fast = {"auto": None, "on": True, "off": False}[args.fast_resize]
        # The toolkit splits a call into tower batches of its own choosing (``--tower-batch``
        # overrides); the baseline, like the reference, runs the whole batch at once.
        clip = vlmrm.load_clip(
            model, device=args.device, precision=precision, batch_size=args.tower_batch, fast_resize=fast,
            compile=compile, backend=backend, threads=threads, **extra,
        )
    return ref_clip, clip


def measure(args: argparse.Namespace, ref_clip: vlmrm.ClipModel, clip: vlmrm.ClipModel, h: int, w: int, batch: int) -> dict[str, float]:
    goal, base = "a humanoid robot kneeling", "a humanoid robot"
    ref_reward = vlmrm.CLIPReward(ref_clip, goal=goal, baseline=base, alpha=0.5)
    reward = vlmrm.CLIPReward(clip, goal=goal, baseline=base, alpha=0.5)
    frames = make_frames(batch, h, w)
    x = clip.preprocess(frames)
    times, _ = interleaved(
        {
            "ref": lambda: reference_rewards(ref_clip, ref_reward, torch.from_numpy(frames)),
            "ours": lambda: reward(frames),
            # the bare tower on the whole, already-normalised batch in one call
            "tower": lambda: clip.encode_preprocessed(x),
        },
        args.repeats,
    )
    probe = make_frames(64, h, w, seed=1)
    r_fp32, r_ours = ref_reward(probe), reward(probe)
    r_ref = reference_rewards(ref_clip, ref_reward, torch.from_numpy(probe)).cpu().numpy()
    gflops = image_tower_gflops(ref_clip)  # the same maths at any precision (int8 kernels are not counted)
    return {
        "ref_fps": batch / times["ref"],
        "fps": batch / times["ours"],
        "tower_fps": batch / times["tower"],
        "tflops": batch / times["tower"] * gflops / 1e3,
        "gflops": gflops,
        "spearman": float(spearmanr(r_ours, r_fp32).statistic),
        "max_dr": float(np.abs(r_ours - r_fp32).max()),
        "spread": float(r_fp32.std()),
        "ref_dr": float(np.abs(r_fp32 - r_ref).max()),
        "precision": ("ov-" if clip.backend == "openvino" else "")
        + clip.precision
        + ("+c" if clip.compile else ""),
        "fast_resize": clip.fast_resize,
        "tower_batch": clip.batch_size,
        "device": str(clip.device),
    }


FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def print_table(rows: list[tuple], ident: dict) -> None:
    """The Markdown table of the run: one row per (frames, load) and path, ratios to the reference."""
    flags = ", ".join(ident["flags"]) or "-"
    print(f"\n{ident['cpu']} ({flags}); torch {torch.__version__}\n")
    print("| frames | load | threads | path | frames/s | reference/s | × reference | Spearman | max abs dR |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model, frames, batch, load, threads, m in rows:
        path = f"{model} {m['precision']}"
        print(
            f"| {frames} × {batch} | {load} | {threads} | {path} | {m['fps']:.1f} | {m['ref_fps']:.1f} | "
            f"{m['fps'] / m['ref_fps']:.2f}× | {m['spearman']:.4f} | {m['max_dr']:.1e} |"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip architecture(s), comma-separated (random weights)")
    p.add_argument("--frame-size", default="480x480", help="HxW of the uint8 frames, comma-separated")
    p.add_argument("--batch-size", default="64", help="batch size(s), comma-separated")
    p.add_argument("--precision", default="auto", help="precision(s) of the toolkit path, comma-separated")
    p.add_argument("--device", default=None)
    p.add_argument(
        "--fast-resize",
        choices=["auto", "on", "off"],
        default="auto",
        help="resize uint8 frames before float conversion (auto: on unless fp32)",
    )
    p.add_argument(
        "--tower-batch",
        type=int,
        default=None,
        help="frames per tower call (default: the toolkit's)",
    )
    p.add_argument(
        "--compile",
        default="false",
        help="torch.compile the toolkit's image tower: false, true or a mode (reduce-overhead, max-autotune); "
        "comma-separated to compare",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--load",
        type=counts,
        default=[0],
        help="busy background processes during every measurement, comma-separated to compare (0,1)",
    )
    p.add_argument(
        "--threads",
        type=thread_counts,
        default=["auto"],
        help="torch threads of both paths: auto (the trainer's policy, --load counted as env workers) or N, comma-separated",
    )
    p.add_argument(
        "--backend",
        default="auto",
        help="tower backend(s) of the toolkit path, comma-separated: torch, openvino (CPU, the openvino "
        "extra), auto (torch unless --precision auto measures OpenVINO faster)",
    )
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's peak TFLOP/s at this precision")
    args = p.parse_args(argv)
    started = time.perf_counter()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.frame_size.split(",")]
    batches = [int(b) for b in args.batch_size.split(",")]
    from vlmrm.cpu_choice import cpu_identity
    from vlmrm.runtime.threads import available_cores
    from vlmrm.runtime.threads import resolve_threads as torch_threads

    ident = cpu_identity()
    versions = f"torch={torch.__version__}"
    if "openvino" in args.backend:
        import openvino

        versions += f" openvino={openvino.__version__}"
    print(f"{versions} cores={available_cores()} cuda={torch.cuda.is_available()}")
    print(f"cpu: {ident['cpu']}; flags: {' '.join(ident['flags']) or 'none of ' + ','.join(FLAGS)}; "
          f"load average before the run: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rows: list[tuple] = []
    header = (
        f"{'model':<10} {'frames':>9} {'batch':>5} {'chunk':>5} {'prec':>7} {'fast':>5} {'load':>4} {'thr':>3} "
        f"{'baseline/s':>10} {'vlmrm/s':>9} "
        f"{'speedup':>7} {'tower/s':>9} {'path/tower':>10} {'TFLOP/s':>8} {'of peak':>7} {'spearman':>8} "
        f"{'max|dR|':>8} {'spread':>8}"
    )
    print(header)
    # Threads outermost: a compiled CPU graph keeps the thread count it was compiled with.
    settings = [  # in the order given, precision outermost
        (backend, precision)
        for precision in args.precision.split(",")
        for backend in args.backend.split(",")
        if backend != "openvino" or precision in ("auto", "fp32", "int8")
    ]
    for threads in dict.fromkeys(
        torch_threads(t if t == "auto" else int(t), load) for t in args.threads for load in args.load
    ):
        torch.set_num_threads(threads)
        for model in args.model.split(","):
            for backend, precision in settings:
                for compile in args.compile.split(","):
                    loading = time.perf_counter()
                    ref_clip, clip = load_pair(args, model, precision, compile, backend, threads)
                    print(
                        f"({model} {clip.precision}{'+c' if clip.compile else ''}, {threads} threads: "
                        f"loaded{' and compiled' if clip.compile else ''} in {time.perf_counter() - loading:.0f} s)",
                        flush=True,
                    )
                    for load in args.load:
                        wanted = {torch_threads(t if t == "auto" else int(t), load) for t in args.threads}
                        if threads not in wanted:
                            continue
                        with busy_cores(load):
                            for h, w in sizes:
                                for batch in batches:
                                    m = measure(args, ref_clip, clip, h, w, batch)
                                    rows.append((model, f"{h}x{w}", batch, load, threads, m))
                                    peak = f"{m['tflops'] / args.peak_tflops:7.1%}" if args.peak_tflops else f"{'-':>7}"
                                    print(
                                        f"{model:<10} {f'{h}x{w}':>9} {batch:>5} {m['tower_batch']:>5} "
                                        f"{m['precision']:>7} {str(m['fast_resize']):>5} {load:>4} {threads:>3} "
                                        f"{m['ref_fps']:10.1f} {m['fps']:9.1f} "
                                        f"{m['ref_fps'] and m['fps'] / m['ref_fps']:6.2f}x {m['tower_fps']:9.1f} "
                                        f"{m['fps'] / m['tower_fps']:10.2f} {m['tflops']:8.3f} {peak} "
                                        f"{m['spearman']:8.4f} {m['max_dr']:8.1e} {m['spread']:8.1e}",
                                        flush=True,
                                    )
                    del ref_clip, clip
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
    print(f"(run time {time.perf_counter() - started:.0f} s)")
    print_table(rows, ident)
    print(f"(fp32 toolkit vs reference pipeline: max |dR| = {m['ref_dr']:.1e}; tower GFLOPs/image = {m['gflops']:.1f})")


if __name__ == "__main__":
    main()
