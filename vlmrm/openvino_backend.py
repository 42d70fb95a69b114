"""The OpenVINO backend of the CPU towers: ``load_clip(spec, device="cpu", backend="openvino")``.

Why: OpenVINO (Intel's inference runtime) fuses a ViT's LayerNorm/GELU/attention traffic
and runs int8 matmuls on VNNI/AMX through its own kernels; on CPUs where torch's int8 path
gains little (a Xeon with AVX-512 VNNI and no AMX: 2.08× the reference idle, 1.14× with a
core busy) it is the faster path. It is an optional extra: ``pip install "vlmrm[openvino]"``
(openvino, and nncf for int8).

What changes is the tower and nothing else. The frames are preprocessed by the same code
(:mod:`vlmrm.preprocess`), the embeddings come back as the same unit float32 torch tensors,
and the reward head, α lists and relabelling never learn which backend ran: the backend is
a property of the loaded :class:`~vlmrm.models.ClipModel`.

* **Conversion**: ``openvino.convert_model(torch.export.export(tower, (x,)))`` with a
  dynamic batch dimension (tracing open_clip's modules fails); the image tower at the
  model's input size, the text tower at its context length. fp32 inference is pinned
  (``INFERENCE_PRECISION_HINT=f32``): OpenVINO would otherwise pick bf16 on CPUs that have
  it, and bf16 scrambles reward rankings (see :mod:`vlmrm.fidelity`).
* **int8** (image tower only; prompts are encoded once): NNCF post-training quantisation,
  calibrated on frames (``calibration=``: the env's own rollouts or the frames being
  scored: without ``calibration=``, the first frames the model embeds), with the
  transformer model type (SmoothQuant of outlier channels into the weights) and an ignored
  scope: the layers whose quantisation the fidelity check found to cost the most rank
  fidelity (:data:`SENSITIVE_LAYERS`) stay fp32.
* **Cache**: the converted and the quantised model are written to
  ``$VLMRM_CACHE`` (default ``~/.cache/vlmrm``) ``/openvino/``, one entry per (model, weights
  hash, tower, input size, precision), so a second load reads them in about a second
  instead of converting again. Each entry is published atomically (the IR pair, then a
  manifest with its sizes, written last): a killed write leaves no entry, a damaged one
  (a truncated file) is rebuilt with one warning, and deleting the folder is always safe.
  The calibration frames of an int8 entry are those of the load that built it; delete the
  entry to recalibrate.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmrm.errors import ConfigError, VLMRMWarning, warn
from vlmrm.runtime.atomic import atomic_write_json, fsync_dir, fsync_file, temporary_path

EXTRA_HINT = 'pip install "vlmrm[openvino]"'
#: Bumped when what is written to the cache changes meaning.
CACHE_FORMAT = 1

#: Conversions and quantisations done by this process (cache misses): tests and benchmarks
#: read these to tell a reused cache entry from a rebuilt one.
counters = {"convert": 0, "quantize": 0}

#: Layers kept fp32 in the int8 image tower, found with the fidelity check (Spearman of
#: rewards against fp32, ViT-B-32 random weights, 128 drawn frames at 480², α = 0.5, one
#: group of layers kept fp32 at a time): all layers int8 0.9966; the final projection
#: fp32 0.9985 (it maps the class token straight into the embedding); every block's MLP
#: output fp32 0.9967 and the last block fp32 0.9983 (no better, and slower). The patch
#: embedding reads the image itself, whose one per-tensor int8 grid coarsens every token.
#: Both are a few percent of the FLOPs. See :func:`sensitive_nodes`.
SENSITIVE_LAYERS = ("patch embedding (the first Convolution)", "final projection (the last MatMul)")


def sensitive_nodes(ov_model: Any) -> list[str]:
    """Names of the :data:`SENSITIVE_LAYERS` in a converted image tower (by position: the
    exported graph names its nodes after the aten op and its index, not the module)."""
    ops = list(ov_model.get_ordered_ops())
    convs = [o.get_friendly_name() for o in ops if o.get_type_name() == "Convolution"]
    matmuls = [o.get_friendly_name() for o in ops if o.get_type_name() == "MatMul"]
    return convs[:1] + matmuls[-1:]


class OpenVINOMissing(ConfigError):
    """``backend='openvino'`` without the ``openvino`` extra installed."""


def require_openvino(for_int8: bool = False) -> Any:
    """The ``openvino`` module (and check ``nncf`` for int8); one line naming the extra if absent."""
    try:
        import openvino

        if for_int8:
            import nncf  # noqa: F401 - only its presence is checked here
    except ImportError as exc:
        missing = "nncf" if "nncf" in str(exc) else "openvino"
        raise OpenVINOMissing(
            f"backend='openvino' needs the openvino extra ({missing} is not installed): {EXTRA_HINT}"
        ) from None
    return openvino


def cache_root() -> Path:
    """Where converted models live: ``$VLMRM_CACHE/openvino`` (default ``~/.cache/vlmrm``)."""
    base = os.environ.get("VLMRM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vlmrm"
    )
    return Path(base) / "openvino"


def weights_digest(module: torch.nn.Module, skip: str | None = None) -> str:
    """A hash of a module's parameters and buffers (names, shapes, dtypes, values); names
    starting with ``skip`` are left out."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        if skip is not None and name.startswith(skip):
            continue
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(tensor.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _entry_name(model: str, tower: str, size: int, precision: str, digest: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[:60]
    return f"{safe}-{tower}{size}-{precision}-{digest[:20]}"


class _Entry:
    """One cache entry: ``<name>.xml`` + ``<name>.bin`` (the IR) and ``<name>.json`` (manifest)."""

    def __init__(self, root: Path, name: str) -> None:
        self.xml = root / f"{name}.xml"
        self.bin = root / f"{name}.bin"
        self.manifest = root / f"{name}.json"

    def read(self, core: Any) -> Any | None:
        """The cached model, or ``None`` when absent or damaged (then warned once and removed)."""
        if not self.manifest.exists():
            return None  # never completed (a killed write publishes no manifest)
        try:
            meta = json.loads(self.manifest.read_text(encoding="utf-8"))
            for path, key in ((self.xml, "xml_bytes"), (self.bin, "bin_bytes")):
                if path.stat().st_size != int(meta[key]):
                    raise ValueError(f"{path.name} has {path.stat().st_size} bytes, expected {meta[key]}")
            return core.read_model(str(self.xml), str(self.bin))
        except Exception as exc:  # noqa: BLE001 - truncated, missing half, unreadable: rebuild
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            warn(
                f"the OpenVINO cache entry {self.xml.with_suffix('')} is damaged ({detail}); "
                "rebuilding it",
                VLMRMWarning,
            )
            for path in (self.manifest, self.xml, self.bin):
                path.unlink(missing_ok=True)
            return None

    def write(self, ov: Any, model: Any, meta: dict) -> None:
        """Publish the IR pair, then the manifest (the entry exists once the manifest does)."""
        self.xml.parent.mkdir(parents=True, exist_ok=True)
        tmp_xml = temporary_path(self.xml)
        tmp_bin = tmp_xml.with_suffix(".bin")
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
            for tmp, final in ((tmp_bin, self.bin), (tmp_xml, self.xml)):
                fsync_file(tmp)
                os.replace(tmp, final)
            fsync_dir(self.xml.parent)
        except BaseException:
            tmp_xml.unlink(missing_ok=True)
            tmp_bin.unlink(missing_ok=True)
            raise
        meta = dict(meta, xml_bytes=self.xml.stat().st_size, bin_bytes=self.bin.stat().st_size)
        atomic_write_json(self.manifest, meta)


class _Tower(torch.nn.Module):
    """One of the model's encoders (``encode_image``, ``encode_text``) as a module's forward,
    for ``torch.export``."""

    def __init__(self, model: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


def _convert(ov: Any, tower: torch.nn.Module, example: torch.Tensor, name: str) -> Any:
    """``torch.export`` with a dynamic batch, then ``openvino.convert_model``."""
    counters["convert"] += 1
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with torch.no_grad():
            exported = torch.export.export(tower.eval(), (example,), dynamic_shapes=({0: batch},))
        return ov.convert_model(exported)
    except Exception as exc:  # export and conversion raise many types; all mean the same here
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(
            f"converting {name} to OpenVINO failed ({type(exc).__name__}: {detail}); "
            "load it with backend='torch'"
        ) from exc


def _quantize(ov_model: Any, calibration: np.ndarray) -> Any:
    """NNCF int8 with SmoothQuant (transformer model type), sensitive layers kept fp32."""
    import nncf

    counters["quantize"] += 1
    batches = [calibration[i : i + 8] for i in range(0, len(calibration), 8)]
    ignored = nncf.IgnoredScope(names=sensitive_nodes(ov_model), validate=False)
    return nncf.quantize(
        ov_model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
        ignored_scope=ignored,
    )


_CORE: Any = None


def shared_core(ov: Any) -> Any:
    """The process's one ``openvino.Core``, kept for the life of the process.

    Each ``Core`` that is freed unloads the CPU plugin with the signal stack it registered,
    so the next signal the process takes (Ctrl-C, a scheduler's SIGTERM or SIGUSR2) would be
    delivered onto freed memory and crash it (measured: SIGSEGV on SIGUSR1 after a model was
    freed). One core that lives as long as the process keeps the plugin loaded.
    """
    global _CORE
    if _CORE is None:
        _CORE = ov.Core()
    return _CORE


def compile_config(threads: int) -> dict[str, Any]:
    """The CPU plugin's settings for a tower: fp32 arithmetic, ``threads`` threads, latency."""
    return {
        "INFERENCE_NUM_THREADS": int(threads),
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        # No pinning: a thread pinned to a core another process keeps busy cannot move.
        "ENABLE_CPU_PINNING": False,
    }


class OpenVINOTower:
    """A compiled OpenVINO tower called like a torch module: tensor in, float32 tensor out."""

    def __init__(self, ov: Any, model: Any, threads: int, integer_input: bool = False) -> None:
        core = shared_core(ov)
        self.compiled = core.compile_model(model, "CPU", compile_config(threads))
        self.request = self.compiled.create_infer_request()
        self.threads = int(threads)
        self.integer_input = integer_input

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy()
        arr = np.ascontiguousarray(arr, dtype=np.int64 if self.integer_input else np.float32)
        self.request.infer({0: arr})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def default_calibration(size: int, n: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random scenes as uint8 frames ``(n, S, S, 3)``: drawn frames for measurements."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 3, 12, 12), generator=gen, dtype=torch.uint8).float()
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class OnFirstCall:
    """A tower built by ``make()`` when it is first called."""

    def __init__(self, make: Callable[[], OpenVINOTower]) -> None:
        self.make = make
        self.tower: OpenVINOTower | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.tower is None:
            self.tower = self.make()
        return self.tower(x)


#: Frames that calibrate int8 when no ``calibration=`` was given: the first frames embedded
#: are collected until there are this many (those calls run in fp32), then quantised once.
CALIBRATION_FRAMES = 32


class LazyInt8Tower:
    """The fp32 tower until :data:`CALIBRATION_FRAMES` frames have been embedded, then int8
    calibrated on exactly those frames: the frames being scored, or the env's own frames in
    training, with no calibration step in any command. Built once per cache entry."""

    def __init__(self, fp32: OpenVINOTower, quantize: Callable[[np.ndarray], OpenVINOTower]) -> None:
        self.fp32 = fp32
        self.quantize = quantize
        self.pending: list[np.ndarray] = []
        self.int8: OpenVINOTower | None = None

    @property
    def threads(self) -> int:
        return self.fp32.threads

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8 is not None:
            return self.int8(x)
        out = self.fp32(x)
        self.pending.append(x.detach().cpu().float().numpy().copy())
        if sum(len(p) for p in self.pending) >= CALIBRATION_FRAMES:
            frames, self.pending = np.concatenate(self.pending), []
            self.int8 = self.quantize(frames)
        return out


def build_towers(
    model: torch.nn.Module,
    name: str,
    image_size: int,
    context_length: int,
    precision: str,
    threads: int,
    preprocess: Callable[[Any], torch.Tensor],
    calibration: Any = None,
) -> tuple[OpenVINOTower | LazyInt8Tower, OnFirstCall]:
    """The compiled image and text towers of ``model``, from the cache or converted now.

    ``precision``: ``fp32`` or ``int8`` (the image tower; the text tower is always fp32).
    ``preprocess``: the model's own frames → input function (calibration goes through it).
    ``calibration``: uint8 frames for int8; without them and without a cached int8 model,
    the tower calibrates on the first frames it embeds (:class:`LazyInt8Tower`). The text
    tower is converted (or read from the cache) when the first prompt is embedded: prompts
    are embedded once, and a user of precomputed prompt embeddings never pays for it.
    """
    if precision not in ("fp32", "int8"):
        raise ConfigError(
            f"backend='openvino' runs precision 'fp32' or 'int8' (or 'auto'), not {precision!r}"
        )
    ov = require_openvino(for_int8=precision == "int8")
    core = shared_core(ov)
    root = cache_root()
    version = f"ov{ov.__version__.split('-')[0]}-f{CACHE_FORMAT}"

    def entry(tower: str, size: int, prec: str, digest: str) -> _Entry:
        full = hashlib.blake2b(f"{digest}:{version}".encode(), digest_size=16).hexdigest()
        return _Entry(root, _entry_name(name, tower, size, prec, full))

    def cached(tower: str, size: int, prec: str, digest: str, make: Callable[[], Any]) -> Any:
        place = entry(tower, size, prec, digest)
        got = place.read(core)
        if got is None:
            got = make()
            meta = {"model": name, "tower": tower, "input_size": size, "precision": prec,
                    "weights": digest, "openvino": ov.__version__, "format": CACHE_FORMAT}
            place.write(ov, got, meta)
        return got

    visual_digest = weights_digest(model.visual)
    text_digest = weights_digest(model, skip="visual.")  # the text tower and its head
    tokens = torch.zeros((2, context_length), dtype=torch.long)

    def text_tower_now() -> OpenVINOTower:
        text = cached(
            "text", context_length, "fp32", text_digest,
            lambda: _convert(ov, _Tower(model, "encode_text"), tokens, f"{name}'s text tower"),
        )
        return OpenVINOTower(ov, text, threads, integer_input=True)

    text_tower = OnFirstCall(text_tower_now)
    example = torch.zeros((2, 3, image_size, image_size))
    fp32 = cached(
        "image", image_size, "fp32", visual_digest,
        lambda: _convert(ov, _Tower(model, "encode_image"), example, f"{name}'s image tower"),
    )
    if precision == "fp32":
        return OpenVINOTower(ov, fp32, threads), text_tower

    def quantized(x: np.ndarray) -> OpenVINOTower:
        q = cached("image", image_size, "int8", visual_digest, lambda: _quantize(fp32, x))
        return OpenVINOTower(ov, q, threads)

    if calibration is not None:
        return quantized(preprocess(calibration).float().numpy()), text_tower
    place = entry("image", image_size, "int8", visual_digest)
    got = place.read(core)
    if got is not None:
        return OpenVINOTower(ov, got, threads), text_tower
    return LazyInt8Tower(OpenVINOTower(ov, fp32, threads), quantized), text_tower
