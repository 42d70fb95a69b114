"""``precision="auto"`` on a CPU: the fastest faithful path, measured once on this CPU.

Why measured: which path is fastest depends on the CPU, not on the model alone. torch's
int8 path (:mod:`vlmrm.quantize`) reached 4.4× the reference idle on an AMD EPYC and 2.1× on
an Intel Xeon with AVX-512 VNNI; OpenVINO (:mod:`vlmrm.openvino_backend`) is faster there.
A fixed rule would be wrong on one of them, so the candidates are timed here:

* torch fp32 (always faithful: it is the reference), torch int8, and, with the
  ``openvino`` extra installed, OpenVINO fp32 and int8;
* each on the same drawn frames at the model's input size, best of three calls, at the
  model's thread count;
* each int8 candidate's rewards against torch fp32 rewards on other drawn frames: it
  qualifies only with Spearman ≥ 0.999 (:data:`vlmrm.checks.RANK_FIDELITY_BAR`, the bar
  of :func:`vlmrm.rank_fidelity`).

The fastest qualifying path wins. The choice is cached per (model, weights hash, input
size, CPU model and flags, threads, OpenVINO version) in ``$VLMRM_CACHE/cpu_choice.json``
(atomic writes; safe to delete: the next load measures again), and printed once per load:
``precision=auto: ...``. Towers too small to gain (under :data:`MIN_TOWER_PARAMS`
parameters, e.g. ``vlmrm-tiny``) and towers that are not ViTs (ResNets) run torch fp32
without a measurement.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrm.checks import RANK_FIDELITY_BAR as DEFAULT_BAR
from vlmrm.runtime.atomic import atomic_write_json
from vlmrm.runtime.threads import using_threads

#: Image towers with fewer parameters run torch fp32: per-call overhead dominates them.
MIN_TOWER_PARAMS = 10_000_000
#: CPU flags that decide which int8 kernels exist.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
GOAL, BASELINE, ALPHA = "a photo of a robot kneeling", "a photo of a robot", 0.5


@dataclass(frozen=True)
class Choice:
    """The path ``precision="auto"`` picked, with what was measured."""

    backend: str
    precision: str
    fps: dict[str, float]
    spearman: dict[str, float]
    measured: bool = True

    def line(self, name: str) -> str:
        """The one line a load prints about its choice."""
        label = f"{self.backend} {self.precision}"
        if not self.measured:
            return f"precision=auto: {label} for {name} (a tower this small gains nothing from int8)"
        rows = ", ".join(
            f"{k} {v:.1f}/s" + (f" (Spearman {self.spearman[k]:.4f})" if k in self.spearman else "")
            for k, v in sorted(self.fps.items(), key=lambda kv: -kv[1])
        )
        return (
            f"precision=auto: {label} for {name} on this CPU, the fastest path with Spearman "
            f">= {DEFAULT_BAR} against fp32 (measured once: {rows}; cached in {choice_file()})"
        )


def cpu_identity() -> dict[str, Any]:
    """The CPU model name and the flags that matter for int8 kernels."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"cpu": name, "flags": [f for f in FLAGS if f in flags]}


def choice_file() -> Path:
    from vlmrm.openvino_backend import cache_root

    return cache_root().parent / "cpu_choice.json"


def _read_cache() -> dict[str, Any]:
    try:
        return json.loads(choice_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: measure again


def openvino_available() -> bool:
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def choose(
    model: torch.nn.Module,
    name: str,
    image_size: int,
    threads: int,
    backends: tuple[str, ...],
    preprocess: Callable[[Any], torch.Tensor],
    tokenize: Callable[[list[str]], torch.Tensor],
) -> Choice:
    """Pick (and cache) the fastest faithful CPU path of ``model``; see the module docstring.

    ``backends``: the backends allowed (``("torch",)``, ``("openvino",)`` or both).
    ``preprocess``: frames → model input; ``tokenize``: prompts → token ids.
    """
    visual = model.visual
    vit = getattr(getattr(visual, "transformer", None), "resblocks", None) is not None
    if not vit or sum(p.numel() for p in visual.parameters()) < MIN_TOWER_PARAMS:
        backend = "torch" if "torch" in backends else backends[0]
        return Choice(backend, "fp32", {}, {}, measured=False)
    if "openvino" in backends and not openvino_available():
        backends = tuple(b for b in backends if b != "openvino") or backends
    from vlmrm.openvino_backend import default_calibration, weights_digest

    ident = cpu_identity()
    version = "-"
    if "openvino" in backends:
        import openvino

        version = openvino.__version__
    key = json.dumps(
        [name, weights_digest(visual), image_size, ident, threads, sorted(backends), version]
    )
    cache = _read_cache()
    if key in cache:
        c = cache[key]
        return Choice(c["backend"], c["precision"], c["fps"], c["spearman"])
    with using_threads(threads):
        choice = _measure(model, name, image_size, threads, backends, preprocess, tokenize,
                          default_calibration)  # fmt: skip
    cache = _read_cache()
    cache[key] = {k: v for k, v in asdict(choice).items() if k != "measured"}
    try:
        atomic_write_json(choice_file(), cache)
    except OSError:
        pass  # a read-only cache: measure again next time rather than fail the load
    return choice


def _measure(model, name, size, threads, backends, preprocess, tokenize, drawn) -> Choice:
    from scipy.stats import spearmanr

    def spearman(a: np.ndarray, b: np.ndarray) -> float:
        return float(spearmanr(a, b).statistic)

    print(f"precision=auto: measuring the CPU paths of {name} once ({', '.join(backends)})",
          file=sys.stderr, flush=True)  # fmt: skip
    timing_x = preprocess(drawn(size, n=32, seed=11)).float()
    probe_x = preprocess(drawn(size, n=64, seed=12)).float()
    calibration = drawn(size, n=32, seed=13)
    with torch.inference_mode():
        text = model.encode_text(tokenize([GOAL, BASELINE])).float()
    text = text / text.norm(dim=-1, keepdim=True)
    g, d = text[0], text[0] - text[1]
    proj = torch.outer(d, d) / d.dot(d)
    m = ALPHA * proj + (1 - ALPHA) * torch.eye(len(d))

    def rewards(emb: torch.Tensor) -> np.ndarray:
        s = emb.float() / emb.float().norm(dim=-1, keepdim=True)
        return (1 - 0.5 * ((s - g) @ m).norm(dim=-1) ** 2).double().numpy()

    candidates: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    if "torch" in backends:
        candidates["torch fp32"] = model.encode_image
        from vlmrm.errors import ConfigError
        from vlmrm.quantize import quantize_image_tower

        quantized = copy.deepcopy(model)
        try:
            quantize_image_tower(quantized)
            candidates["torch int8"] = quantized.encode_image
        except ConfigError:
            pass  # a tower the torch int8 path does not support
    if "openvino" in backends:
        from vlmrm.openvino_backend import build_towers

        context = int(getattr(model, "context_length", 77) or 77)
        for prec in ("fp32", "int8"):
            image, _ = build_towers(model, name, size, context, prec, threads, preprocess, calibration)
            candidates[f"openvino {prec}"] = image
    with torch.inference_mode():
        exact = rewards(model.encode_image(probe_x))
        fps, rho = {}, {}
        for label, tower in candidates.items():
            tower(timing_x)  # warm-up
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                tower(timing_x)
                best = min(best, time.perf_counter() - start)
            fps[label] = len(timing_x) / best
            if label != "torch fp32":
                rho[label] = float(spearman(rewards(tower(probe_x)), exact))
    faithful = [k for k in fps if rho.get(k, 1.0) >= DEFAULT_BAR]
    best_label = max(faithful, key=lambda k: fps[k]) if faithful else "torch fp32"
    backend, precision = best_label.split()
    return Choice(backend, precision, fps, rho)
