"""The CPU figures behind ``precision="int8"``: kernels, precisions, smoothing, where time goes.

``benchmarks/reward_throughput.py`` measures the whole reward path against the reference;
this script measures the pieces that explain it, each a section of its own (``--sections``):

* ``gemm``: matmul rate of one transformer-sized GEMM (M×K×N, default 3200×768×3072: a
  ViT-B-32 MLP on 64 frames) in fp32, fp16, bf16 and int8 (``torch._int_mm``, int32
  accumulation), GFLOP/s (GOP/s for int8) and the ratio to fp32: only integer dot products
  (VNNI) beat fp32 FMA on a CPU without AMX;
* ``reductions``: the per-row range that quantising an activation needs, as ``amax`` and
  ``amin`` (what :mod:`vlmrm.quantize` does) against ``linalg.vector_norm(inf)``;
* ``resize``: 64 uint8 frames (480×480 by default) to the tower's input, the reference's
  way (to float, then an antialiased bicubic resize) against ``fast_resize`` (resize the
  uint8 frames channels-last, then convert the small result);
* ``precisions``: the bare image tower (64 images in one call) in open_clip's precisions:
  fp32, fp16 and bf16 with LayerNorms kept in fp32 (open_clip's ``convert_weights_to_lp``),
  and pure fp16/bf16 (every weight cast), with the rewards' Spearman against fp32 on the
  same images; and the tower's GFLOP per image (torch's FlopCounterMode);
* ``chunks``: tower images/s of fp32 and int8 at 34 and 64 frames per call (the toolkit's
  default CPU chunk keeps activations under glibc's 32 MB mmap threshold);
* ``smoothing``: rank fidelity of int8 rewards to fp32 rewards, without SmoothQuant and
  with α 0.35/0.5/0.65/0.8, on the random weights and on the same weights with planted
  outlier channels (3 random channels of every LayerNorm ×20, the shape of trained ViTs'
  outliers), over three sets of 64 frames;
* ``profile``: torch's profiler on the eager int8 tower (34 frames, one call), self CPU
  time grouped by kind of work.
* ``openvino``: rank fidelity and speed of the OpenVINO image tower's int8 variants against
  OpenVINO fp32 (needs the ``openvino`` extra): static int8 as ``backend="openvino"`` builds
  it (NNCF, SmoothQuant, the sensitive layers fp32) with 32/64/128 calibration frames and
  with the first and last blocks fp32 too; weight-only int8 (the same layers fp32) with the
  CPU plugin's dynamic quantisation of activations in groups of 32 or 64, and without it.
  Spearman against torch fp32 rewards on 128 frames drawn apart from the calibration's.

Every figure comes from random (seeded) weights: no pretrained weights are needed.

    python benchmarks/int8_study.py                       # every section, ViT-B-32, 2 threads
    python benchmarks/int8_study.py --sections gemm --threads 1
    python benchmarks/int8_study.py --sections smoothing,profile
    python benchmarks/int8_study.py --sections openvino
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import vlmrm
from vlmrm.preprocess import preprocess
from vlmrm.quantize import quantize_image_tower

SECTIONS = ("gemm", "reductions", "resize", "precisions", "chunks", "smoothing", "profile", "openvino")
GOAL, BASELINE, ALPHA = "a humanoid robot kneeling", "a humanoid robot", 0.5


def _throughput_module():
    """``benchmarks/reward_throughput.py`` (its frame maker and FLOP counter), imported by name
    from this script's folder (which is not on ``sys.path`` when the script runs under runpy)."""
    if str(Path(__file__).parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).parent))
    import reward_throughput

    return reward_throughput


#: A candidate whose warm-up call takes longer than this is timed by that call alone.
SLOW_CALL_S = 5.0


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` timed calls after one warm-up call (see :func:`interleaved`)."""
    return interleaved({"fn": fn}, repeats)["fn"]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds per candidate, the candidates run in turn.

    On a shared machine a burst of load then hits every candidate alike, so the ratios
    of one run hold even when the absolute times do not. The warm-up call is timed too:
    a candidate slower than :data:`SLOW_CALL_S` keeps that one figure (no repeats).
    """
    best = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        fn()
        best[name] = time.perf_counter() - t
    fast = [n for n in fns if best[n] <= SLOW_CALL_S]
    for n in fast:
        best[n] = float("inf")
    for _ in range(repeats):
        for n in fast:
            t = time.perf_counter()
            fns[n]()
            best[n] = min(best[n], time.perf_counter() - t)
    return best


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(flush=True)


def load(model: str, precision: str = "fp32", **kw) -> vlmrm.ClipModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random weights" for an architecture name
        return vlmrm.load_clip(model, device="cpu", precision=precision, **kw)


def rewards(clip: vlmrm.ClipModel, x: torch.Tensor) -> np.ndarray:
    """The goal-baseline reward of preprocessed images ``x`` (one tower call per 64)."""
    reward = vlmrm.CLIPReward(clip, goal=GOAL, baseline=BASELINE, alpha=ALPHA)
    emb = torch.cat([clip.encode_preprocessed(c) for c in x.split(64)])
    return reward.reward_from_embeddings(emb).cpu().numpy()


# --------------------------------------------------------------------------- sections


def section_gemm(args: argparse.Namespace) -> None:
    m, k, n = args.gemm
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    qa = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    qb = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8).t()  # (K, N) column-major
    ops = 2 * m * k * n
    cases = {
        "fp32": lambda: a @ b,
        "fp16": (lambda x, y: lambda: x @ y)(a.half(), b.half()),
        "bf16": (lambda x, y: lambda: x @ y)(a.bfloat16(), b.bfloat16()),
        "int8 (`torch._int_mm`, int32 accumulation)": lambda: torch._int_mm(qa, qb),
    }
    secs = interleaved(cases, args.repeats)
    print(f"## gemm: {m}×{k} @ {k}×{n}, {torch.get_num_threads()} thread(s), best of {args.repeats}\n")
    table(
        ["dtype", "ms", "GFLOP/s (GOP/s for int8)", "vs fp32"],
        [[k_, f"{s * 1e3:.2f}", f"{ops / s / 1e9:.0f}", f"{secs['fp32'] / s:.2f}×"] for k_, s in secs.items()],
    )


def section_reductions(args: argparse.Namespace) -> None:
    x = torch.randn(3200, 768, generator=torch.Generator().manual_seed(0))
    cases = {
        "`amax` + `amin` (vlmrm.quantize)": lambda: (x.amax(dim=-1), x.amin(dim=-1)),
        "`linalg.vector_norm(inf)`": lambda: torch.linalg.vector_norm(x, float("inf"), dim=-1),
    }
    secs = interleaved(cases, 10 * args.repeats)
    first = next(iter(secs.values()))
    print(f"## reductions: per-row range of a 3200×768 fp32 activation, {torch.get_num_threads()} thread(s)\n")
    table(["reduction", "µs", "vs amax+amin"], [[k, f"{s * 1e6:.0f}", f"{s / first:.1f}×"] for k, s in secs.items()])


def section_resize(args: argparse.Namespace, clip: vlmrm.ClipModel) -> None:
    h, w = args.frame_size
    frames = torch.from_numpy(_throughput_module().make_frames(64, h, w)).permute(0, 3, 1, 2)
    common = dict(size=clip.image_size, mean=clip.mean, std=clip.std, device=torch.device("cpu"))
    cases = {
        "reference: uint8 → float, then resize": lambda: preprocess(frames, **common, fast_resize=False),
        "the float conversion alone (`/255`)": lambda: frames.float() / 255.0,
        "vlmrm `fast_resize`: uint8 resize, channels-last, then float": lambda: preprocess(
            frames, **common, fast_resize=True
        ),
    }
    secs = interleaved(cases, args.repeats)
    print(f"## resize: 64 frames {h}×{w} → {clip.image_size}² (bicubic, antialiased), "
          f"{torch.get_num_threads()} thread(s)\n")
    table(["path", "ms / 64 frames"], [[k, f"{s * 1e3:.1f}"] for k, s in secs.items()])


def section_precisions(args: argparse.Namespace, clip: vlmrm.ClipModel, x: torch.Tensor) -> None:
    from open_clip.model import convert_weights_to_lp

    variants: dict[str, tuple[str, Callable[[torch.nn.Module], object]]] = {
        "fp32": ("fp32", lambda m: None),
        "fp16 (LayerNorm fp32)": ("fp16", lambda m: convert_weights_to_lp(m, torch.float16)),
        "pure fp16": ("fp16", lambda m: m.half()),
        "bf16 (LayerNorm fp32)": ("bf16", lambda m: convert_weights_to_lp(m, torch.bfloat16)),
        "pure bf16": ("bf16", lambda m: m.bfloat16()),
    }
    x = x[:64]
    ref = rewards(clip, x)
    models, one_image = {}, {}
    for name, (precision, cast) in variants.items():
        model = copy.deepcopy(clip.model)
        cast(model)
        v = dataclasses.replace(clip, model=model, precision=precision, _text_cache={})
        t = time.perf_counter()
        v.encode_preprocessed(x[:1].to(v.dtype))
        one_image[name] = time.perf_counter() - t
        models[name] = v
    # A precision whose kernels fall back to scalar code (e.g. fp16 matmuls on a CPU
    # without fp16 arithmetic) would take hours for 64 images: its one-image time stands.
    fast = {n: v for n, v in models.items() if one_image[n] <= SLOW_CALL_S}
    secs = interleaved(
        {n: (lambda v=v: v.encode_preprocessed(x.to(v.dtype))) for n, v in fast.items()}, args.repeats
    )
    rows = []
    for name, v in models.items():
        if name in fast:
            fps = len(x) / secs[name]
            r = rewards(v, x.to(v.dtype))
            fid = [f"{spearmanr(r, ref).statistic:.4f}", f"{np.abs(r - ref).max():.1e}"]
        else:
            fps = 1 / one_image[name]
            fid = [f"not measured ({one_image[name]:.0f} s per image)", ""]
        rows.append([name, f"{fps:.2f}", f"{fps * secs['fp32'] / len(x):.3f}×", *fid])
    gflops = _throughput_module().image_tower_gflops(clip)
    print(f"## precisions: {args.model} image tower, 64 images in one call, {torch.get_num_threads()} "
          f"thread(s); {gflops:.2f} GFLOP/image (FlopCounterMode); reward spread {ref.std():.1e} (std)\n")
    table(["precision", "images/s", "vs fp32", "Spearman vs fp32", "max \\|ΔR\\|"], rows)


def section_chunks(args: argparse.Namespace, clip: vlmrm.ClipModel, int8: vlmrm.ClipModel,
                   x: torch.Tensor) -> None:
    def run(c: vlmrm.ClipModel, chunk: int) -> Callable[[], None]:
        return lambda: [c.encode_preprocessed(part) for part in x.split(chunk)]

    cases = {(name, chunk): run(c, chunk) for name, c in (("fp32", clip), ("int8", int8)) for chunk in (34, 64)}
    secs = interleaved(cases, args.repeats)
    fps = {k: len(x) / s for k, s in secs.items()}
    rows = [[n, f"{fps[n, 34]:.1f}", f"{fps[n, 64]:.1f}", f"{fps[n, 34] / fps[n, 64]:.2f}×"] for n in ("fp32", "int8")]
    print(f"## chunks: {args.model} image tower, {len(x)} images in calls of 34 or 64, "
          f"{torch.get_num_threads()} thread(s)\n")
    table(["precision", "images/s, 34 per call", "images/s, 64 per call", "34 vs 64"], rows)


def plant_outliers(model: torch.nn.Module, factor: float = 20.0, channels: int = 3, seed: int = 0) -> None:
    """Scale ``channels`` random channels of every image-tower LayerNorm by ``factor`` (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.visual.transformer.resblocks:
            for ln in (block.ln_1, block.ln_2):
                idx = torch.randperm(ln.weight.numel(), generator=gen)[:channels]
                ln.weight[idx] *= factor
                ln.bias[idx] *= factor


def section_smoothing(args: argparse.Namespace, clip: vlmrm.ClipModel) -> None:
    h, w = args.frame_size
    sets = [clip.preprocess(_throughput_module().make_frames(64, h, w, seed=s)) for s in (1, 2, 3)]
    alphas: list[float | None] = [None, 0.35, 0.5, 0.65, 0.8]
    rows = []
    for weights in ("random", "planted outliers"):
        base = copy.deepcopy(clip.model)
        if weights != "random":
            plant_outliers(base)
        fp32 = dataclasses.replace(clip, model=base, _text_cache={})
        refs = [rewards(fp32, x) for x in sets]
        spread = np.mean([r.std() for r in refs])
        for alpha in alphas:
            model = copy.deepcopy(base)
            quantize_image_tower(model, smoothing=alpha)
            q = dataclasses.replace(clip, model=model, precision="int8", _text_cache={})
            outs = [rewards(q, x) for x in sets]
            sp = [spearmanr(o, r).statistic for o, r in zip(outs, refs, strict=True)]
            mean_dr = [np.abs(o - r).mean() for o, r in zip(outs, refs, strict=True)]
            rms = np.sqrt(np.mean([np.mean((o - r) ** 2) for o, r in zip(outs, refs, strict=True)]))
            rows.append([weights, f"{spread:.1e}", "none" if alpha is None else f"{alpha:g}",
                         " / ".join(f"{s:.4f}" for s in sp), " / ".join(f"{d:.1e}" for d in mean_dr),
                         f"{rms:.1e}"])
    print(f"## smoothing: {args.model} int8 vs fp32 rewards, three sets of 64 frames {h}×{w} "
          "(fp32 resize for both)\n")
    table(["weights", "reward spread (std)", "SmoothQuant α", "Spearman vs fp32 (sets 1/2/3)",
           "mean \\|ΔR\\| (sets 1/2/3)", "RMS ΔR"], rows)


def section_openvino(args: argparse.Namespace, clip: vlmrm.ClipModel, x: torch.Tensor) -> None:
    import nncf
    import openvino as ov

    from vlmrm import openvino_backend as ovb

    h, w = args.frame_size
    reward = vlmrm.CLIPReward(clip, goal=GOAL, baseline=BASELINE, alpha=ALPHA)
    ref = rewards(clip, x)
    size = clip.image_size
    fp32 = ovb._convert(ov, ovb._Tower(clip.model, "encode_image"), torch.zeros((2, 3, size, size)), "image tower")
    calib = clip.preprocess(_throughput_module().make_frames(128, h, w, seed=7)).float().numpy()
    matmuls = [o.get_friendly_name() for o in fp32.get_ordered_ops() if o.get_type_name() == "MatMul"]
    sensitive = ovb.sensitive_nodes(fp32)
    blocks = matmuls[:4] + matmuls[-5:-1]  # in_proj, out_proj, fc1, fc2 of the first and last block

    def static(n: int, keep: list[str]):
        batches = [calib[i : i + 8] for i in range(0, n, 8)]
        return nncf.quantize(
            fp32, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
            ignored_scope=nncf.IgnoredScope(names=keep, validate=False),
        )

    weight_only = nncf.compress_weights(
        fp32.clone(), mode=nncf.CompressWeightsMode.INT8_SYM,
        ignored_scope=nncf.IgnoredScope(names=sensitive, validate=False),
    )
    candidates = {
        "fp32": (fp32, {}),
        "static int8, 32 calibration frames (the default)": (static(32, sensitive), {}),
        "static int8, 64 calibration frames": (static(64, sensitive), {}),
        "static int8, 128 calibration frames": (static(128, sensitive), {}),
        "static int8, 64 frames, first and last block fp32 too": (static(64, sensitive + blocks), {}),
        "weight-only int8 + dynamic int8 activations, groups of 32": (weight_only, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "32"}),
        "weight-only int8 + dynamic int8 activations, groups of 64": (weight_only, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "64"}),
        "weight-only int8, fp32 activations": (weight_only, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}),
    }
    core = ovb.shared_core(ov)
    compiled = {}
    for name, (model, extra) in candidates.items():
        # the configuration OpenVINOTower compiles with, plus the candidate's own keys
        compiled[name] = core.compile_model(model, "CPU", {**ovb.compile_config(args.threads), **extra})
    batch = x[:64].numpy()
    secs = interleaved({n: (lambda c=c: c(batch)) for n, c in compiled.items()}, args.repeats)
    rows = []
    for name, c in compiled.items():
        emb = torch.cat([torch.from_numpy(c(part.numpy())[0].copy()) for part in x.split(64)])
        out = reward.reward_from_embeddings(emb).cpu().numpy()
        rows.append([name, f"{secs['fp32'] / secs[name]:.2f}×", f"{spearmanr(out, ref).statistic:.5f}",
                     f"{np.abs(out - ref).max():.1e}"])
    print(f"## openvino: {args.model} image tower on OpenVINO {ov.__version__}, {len(x)} frames {h}×{w}, "
          f"{args.threads} thread(s); speed of 64 images in one call, best of {args.repeats}\n")
    table(["variant", "speed vs OpenVINO fp32", "Spearman vs torch fp32", "max \\|ΔR\\|"], rows)


#: Kinds of work in the profile, by substrings of the op names (first match wins).
KINDS = (
    ("int8 GEMM (`_int_mm`)", ("_int_mm",)),
    ("dtype conversions", ("aten::to", "_to_copy", "aten::copy_")),
    ("patch convolution", ("conv",)),
    ("attention (SDPA)", ("scaled_dot_product", "flash_attention", "_softmax", "bmm", "baddbmm")),
    ("quantise steps (range, scale, round, cast)", ("amax", "amin", "round", "aten::mul", "aten::div",
                                                    "maximum", "clamp", "addcmul", "neg")),
    ("LayerNorm, GELU", ("layer_norm", "gelu")),
    ("fp32 matmuls (final projection, residual GEMMs)", ("aten::mm", "addmm", "matmul", "linear")),
)


def section_profile(args: argparse.Namespace, int8: vlmrm.ClipModel, x: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity, profile

    x = x[:34]
    int8.encode_preprocessed(x)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        int8.encode_preprocessed(x)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    share: dict[str, float] = {}
    for e in events:
        kind = next((k for k, keys in KINDS if any(s in e.key for s in keys)), "other")
        share[kind] = share.get(kind, 0.0) + e.self_cpu_time_total
    print(f"## profile: eager int8 {args.model} tower, 34 frames, one call, {torch.get_num_threads()} "
          f"thread(s); {total / 1e3:.0f} ms of self CPU time\n")
    order = [k for k, _ in KINDS] + ["other"]
    table(["kind of work", "share of self CPU time"],
          [[k, f"{100 * share[k] / total:.1f}%"] for k in order if k in share])
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
    table(["op (top 8)", "calls", "share"],
          [[f"`{e.key}`", str(e.count), f"{100 * e.self_cpu_time_total / total:.1f}%"] for e in top])


# --------------------------------------------------------------------------- main


def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list from {SECTIONS}")
    p.add_argument("--model", default="ViT-B-32", help="open_clip ViT architecture (random weights)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--frame-size", type=_size, default=(480, 480), help="HxW of the uint8 frames")
    p.add_argument("--gemm", type=int, nargs=3, default=(3200, 768, 3072), metavar=("M", "K", "N"))
    p.add_argument("--repeats", type=int, default=3, help="timed calls per candidate (best is kept)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {bad}; choose from {SECTIONS}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"int8_study: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), sections {','.join(sections)}\n", flush=True)
    clip = int8 = x = None
    if set(sections) & {"resize", "precisions", "chunks", "smoothing", "profile", "openvino"}:
        clip = load(args.model, "fp32")
        h, w = args.frame_size
        x = clip.preprocess(_throughput_module().make_frames(128, h, w))
    if set(sections) & {"chunks", "profile"}:
        int8 = load(args.model, "int8")
    t0 = time.perf_counter()
    for name in sections:
        if name == "gemm":
            section_gemm(args)
        elif name == "reductions":
            section_reductions(args)
        elif name == "resize":
            section_resize(args, clip)
        elif name == "precisions":
            section_precisions(args, clip, x)
        elif name == "chunks":
            section_chunks(args, clip, int8, x)
        elif name == "smoothing":
            section_smoothing(args, clip)
        elif name == "profile":
            section_profile(args, int8, x)
        elif name == "openvino":
            section_openvino(args, clip, x)
    print(f"int8_study: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
