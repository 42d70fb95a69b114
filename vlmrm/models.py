"""Loading CLIP models through open_clip, and the two encoders the reward core needs.

One entry point, :func:`load_clip`, resolves every way a user names a model:

* ``"ARCH/TAG"`` — an open_clip architecture and pretrained tag, from the Hugging Face
  cache (downloaded on first use when online);
* ``"ARCH"`` — random weights from a fixed seed, with a warning (tests, benchmarks);
* ``"ARCH"`` with ``pretrained=<file>`` — a local ``.safetensors``/``.pt``/``.bin`` file;
* ``"vlmrm-tiny"`` — a small architecture registered by this package, seeded random
  weights, fast on a CPU; for tests and smoke runs.

Where the weights come from (tags, the hub cache, local files, failing fast offline) is
:mod:`vlmrm.weights`; this module wraps the open_clip module in a :class:`ClipModel`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import open_clip
import torch

from vlmrm.checks import (  # noqa: F401 - BACKENDS: re-exported
    BACKENDS,
    PRECISIONS,
    TRAIN_PRECISIONS,
    check_backend,
    check_device,
    check_precision,
    resolve_compile,
)
from vlmrm.compiling import compile_image_encoder
from vlmrm.errors import ConfigError, LongPromptWarning, warn
from vlmrm.model_spec import parse_spec
from vlmrm.preprocess import RESIZE_MODES, FrameBatch, as_frame_tensor, preprocess
from vlmrm.quantize import quantize_image_tower
from vlmrm.runtime.threads import (
    announce_threads,
    check_threads,
    process_threads,
    resolve_threads,
    using_threads,
)
from vlmrm.weights import (  # noqa: F401 - TINY, RANDOM_WEIGHTS_SEED: re-exported
    OPENAI_MEAN,
    OPENAI_STD,
    RANDOM_WEIGHTS_SEED,
    TINY,
    create_model,
    is_tag,
    register_model_configs,
)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` → CUDA when present, else CPU; a CUDA request without CUDA is an error."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str):
        device = check_device(device)
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """Pick the concrete precision; ``auto`` is the fastest one that keeps reward ranks.

    On CUDA that is fp16 weights (11-bit mantissa: errors well below the spread of rewards
    between frames). On CPU it is fp32 here: bf16 was measured to scramble reward rankings
    (Spearman 0.82–0.88 with fp32) and fp16 matmuls are slow on CPUs; :func:`load_clip`
    then measures, once per model and CPU, whether an int8 path (torch's,
    :mod:`vlmrm.quantize`, or OpenVINO's) is faster and keeps Spearman ≥ 0.999
    (:mod:`vlmrm.cpu_choice`). An explicit ``"int8"`` is not checked: check it on your
    own model and frames (:func:`vlmrm.rank_fidelity`) before trusting it.
    """
    precision = check_precision(precision, PRECISIONS)
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(
            f"precision='int8' is the CPU fast path (integer matmuls); on {device.type} use "
            "precision='fp16' (or 'auto')"
        )
    return precision


def training_precision(precision: str, device: torch.device) -> dict[str, str | None]:
    """A training command's ``precision=`` → the ``load_clip`` arguments that train in it.

    Commands that train weights (tuning, TTA) keep fp32 weights; reduced precision means
    mixed precision: ``load_clip(precision="amp", amp_dtype=...)`` makes the encoders
    autocast. ``auto`` is ``amp`` on CUDA (fp16, with loss scaling by the trainer) and
    fp32 on CPU; ``bf16`` autocasts to bf16 on either device; ``fp16`` needs CUDA.
    """
    precision = check_precision(precision, TRAIN_PRECISIONS)
    if precision == "auto":
        precision = "amp" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return {"precision": "fp32", "amp_dtype": None}
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            "precision=fp16 mixed precision needs CUDA; on a CPU use precision=bf16 (or amp, fp32)"
        )
    return {"precision": "amp", "amp_dtype": None if precision == "amp" else precision}


_CPU_ACTIVATION_BUDGET = 20 * 2**20


def default_cpu_batch(model: torch.nn.Module, cap: int = 64) -> int:
    """Frames per image-tower call on CPU: the largest activation stays under ~20 MB.

    Why: glibc serves allocations above 32 MB with fresh ``mmap`` pages, so every op whose
    output is that large page-faults its whole output on every call. Keeping the MLP
    activation (frames × tokens × width × 4 bytes) under the threshold measured 1.15×
    (ViT-B-32, 32 vs 64 frames) and 1.1× (ViT-L-14, 4 vs 16) faster fp32 towers, 1.4×
    for int8; GEMMs keep ≥ 200 rows, which is plenty on CPU.
    """
    visual = getattr(model, "visual", None)
    try:
        block = visual.transformer.resblocks[0]
        width = int(block.mlp.c_fc.out_features)
        tokens = int(visual.grid_size[0] * visual.grid_size[1] + 1)
    except (AttributeError, IndexError, TypeError):
        return 32
    return max(1, min(cap, _CPU_ACTIVATION_BUDGET // (tokens * width * 4)))


def _cast_dtype(precision: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


@dataclass
class ClipModel:
    """A loaded CLIP with batched, device-side image and text encoders.

    ``embed_images`` and ``embed_texts`` return unit-norm float32 embeddings on
    ``device``; text embeddings are cached per prompt, so prompts are encoded once.
    """

    model: torch.nn.Module
    tokenizer: object
    name: str
    device: torch.device
    precision: str
    image_size: int
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD
    batch_size: int = 64
    resize_mode: str = "squash"
    fast_resize: bool = False
    compile: str | None = None
    amp_dtype: str | None = None
    backend: str = "torch"
    threads: int | None = None
    _image_engine: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    _text_engine: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    _text_cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _compiled_encoder: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    _warned_prompts: set[str] = field(default_factory=set, repr=False)
    image_calls: int = field(default=0, repr=False)

    @property
    def dtype(self) -> torch.dtype:
        return _cast_dtype(self.precision)

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint embedding space."""
        dim = getattr(getattr(self.model, "visual", None), "output_dim", None)
        return int(dim) if dim else int(self.embed_texts(["a photo"]).shape[-1])

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype ``precision="amp"`` autocasts to (``None`` otherwise): ``amp_dtype``, or
        the device's natural one, fp16 on CUDA and bf16 on CPU."""
        if self.precision != "amp":
            return None
        if self.amp_dtype is not None:
            return _cast_dtype(self.amp_dtype)
        return torch.float16 if self.device.type == "cuda" else torch.bfloat16

    def _autocast(self):
        dtype = self.autocast_dtype
        if dtype is not None:
            return torch.autocast(self.device.type, dtype=dtype)
        return torch.autocast(self.device.type, enabled=False)

    def preprocess(self, frames: FrameBatch) -> torch.Tensor:
        """Validated frames → normalised ``(N, 3, S, S)`` model input on the device."""
        x = as_frame_tensor(frames)
        return preprocess(
            x,
            size=self.image_size,
            mean=self.mean,
            std=self.std,
            device=self.device,
            dtype=self.dtype,
            resize_mode=self.resize_mode,
            fast_resize=self.fast_resize,
        )

    # -- the encoders, with gradients: TTA, tuning and captioning train through these --

    @property
    def context_length(self) -> int:
        """Tokens the text tower reads, start and end tokens included (77 for CLIP)."""
        length = getattr(self.tokenizer, "context_length", None) or getattr(self.model, "context_length", None)
        return int(length) if length else int(self.tokenizer(["a"]).shape[-1])

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids ``(N, L)`` of prompts on the model's device.

        Every prompt reaches the text tower through here, so this is where a prompt longer
        than the context is noticed: the tokenizer cuts it silently, and a user comparing
        goals would never learn that the end of theirs changed nothing. Each such prompt
        gets one :class:`~vlmrm.errors.LongPromptWarning` per model (the first five; then
        one warning says that more are cut, so a data set of long captions is not a flood).
        """
        texts = check_prompts(texts, "texts")
        tokens = self.tokenizer(texts)
        self._warn_long_prompts(texts, tokens)
        return tokens.to(self.device)

    def _warn_long_prompts(self, texts: list[str], tokens: torch.Tensor) -> None:
        # A prompt that was cut fills every position, so only full rows need counting.
        context = int(tokens.shape[-1])
        full = (tokens[:, -1] != _pad_id(self.tokenizer)).tolist()
        for text, is_full in zip(texts, full, strict=True):
            if not is_full or text in self._warned_prompts:
                continue
            count = token_count(self.tokenizer, text)
            if count is not None and count <= context:
                continue
            self._warned_prompts.add(text)
            reported = len(self._warned_prompts)
            if reported > _LONG_PROMPT_REPORTS + 1:
                continue
            if reported == _LONG_PROMPT_REPORTS + 1:  # e.g. a caption data set full of long captions
                warn(f"more prompts are longer than the {context} tokens the text tower of {self.name} "
                     "reads; they are cut off too, and not reported one by one", LongPromptWarning)  # fmt: skip
                continue
            many = f"{count} tokens" if count is not None else "more tokens"
            warn(
                f"prompt {_abbreviate(text)!r} has {many}, more than the {context} (start and end "
                f"tokens included) that the text tower of {self.name} reads; the rest is cut off "
                "and does not change the embedding: shorten the prompt",
                LongPromptWarning,
            )

    def image_features(
        self,
        x: torch.Tensor,
        *,
        params: dict[str, torch.Tensor] | None = None,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Image tower on preprocessed input ``(N, 3, S, S)`` (:meth:`preprocess`), with gradients.

        Returns float32 embeddings (unit length when ``normalize``). ``params`` replaces
        weights by name (``model.named_parameters()`` names, e.g. ``"visual.proj"``)
        without touching the module: adapted copies in TTA, ``torch.func`` transforms.
        """
        x = x.to(self.dtype)
        encode = self._compiled_encoder or self.model.encode_image
        return self._tower(self._image_engine, "encode_image", encode, x, params, normalize)

    def text_features(
        self,
        tokens: torch.Tensor,
        *,
        params: dict[str, torch.Tensor] | None = None,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Text tower on token ids ``(N, L)`` (:meth:`tokenize`), with gradients; see :meth:`image_features`."""
        return self._tower(
            self._text_engine, "encode_text", self.model.encode_text, tokens, params, normalize
        )

    def _tower(
        self,
        engine: Callable[[torch.Tensor], torch.Tensor] | None,
        method: str,
        encode: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        params: dict[str, torch.Tensor] | None,
        normalize: bool,
    ) -> torch.Tensor:
        """One tower's float32 embeddings: the OpenVINO ``engine`` when there is one, else
        ``encode`` under autocast, or the model's ``method`` with ``params`` swapped in."""
        if engine is not None:
            self._check_inference(params)
            emb = engine(x).float()
            return emb / emb.norm(dim=-1, keepdim=True) if normalize else emb
        with self._autocast():
            emb = _call_with(self.model, method, params, x) if params else encode(x)
        emb = emb.float()
        return emb / emb.norm(dim=-1, keepdim=True) if normalize else emb

    def _check_inference(self, params: dict | None) -> None:
        """The OpenVINO towers compute embeddings only: no gradients, no replaced weights."""
        if params or torch.is_grad_enabled():
            raise ConfigError(
                f"{self.name} runs on the {self.backend} backend, which computes embeddings only "
                "(no gradients, no replaced weights); load it with backend='torch' to train "
                "through it"
            )

    # -- the inference encoders: the same towers, without autograd, for rewards --

    @torch.inference_mode()
    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """Image tower on already-normalised input → unit float32 embeddings (no autograd)."""
        self.image_calls += 1
        with using_threads(self.threads):
            return self.image_features(x)

    @torch.inference_mode()
    def embed_images(
        self,
        frames: FrameBatch,
        batch_size: int | None = None,
        resize_mode: str | None = None,
    ) -> torch.Tensor:
        """Unit image embeddings ``(N, D)`` of frames, processed in chunks of ``batch_size``.

        ``frames``: ``(N, H, W, 3)``, ``(H, W, 3)`` or ``(N, 3, H, W)``; uint8 (or float in
        [0, 1]); NumPy or torch; any size and aspect ratio (see :mod:`vlmrm.preprocess`
        for what happens to non-square frames).
        """
        x = as_frame_tensor(frames)
        bs = int(batch_size or self.batch_size)
        if bs <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
        mode = resize_mode or self.resize_mode
        if mode not in RESIZE_MODES:
            raise ConfigError(f"unknown resize_mode {mode!r}; choose one of {RESIZE_MODES}")
        if x.shape[0] == 0:
            return torch.empty((0, self.embed_dim), device=self.device)
        out = []
        for start in range(0, x.shape[0], bs):
            chunk = preprocess(
                x[start : start + bs],
                size=self.image_size,
                mean=self.mean,
                std=self.std,
                device=self.device,
                dtype=self.dtype,
                resize_mode=mode,
                fast_resize=self.fast_resize,
            )
            out.append(self.encode_preprocessed(chunk))
        return torch.cat(out)

    @torch.inference_mode()
    def embed_texts(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Unit text embeddings ``(N, D)`` of prompts; each prompt is encoded once and cached."""
        texts = check_prompts(texts, "texts")
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            with using_threads(self.threads):
                emb = self.text_features(self.tokenize(missing))
            for t, e in zip(missing, emb, strict=True):
                self._text_cache[t] = e
        return torch.stack([self._text_cache[t] for t in texts])

    def enable_compile(self, mode: str | bool = True) -> None:
        """``torch.compile`` the image tower now (a warm-up batch compiles it), or undo it.

        ``mode``: ``True``/``"default"``, ``"reduce-overhead"`` (CUDA graphs),
        ``"max-autotune"``..., or ``False`` to go back to eager. Weights may still change
        afterwards (parameters are graph inputs, not constants).
        """
        resolved = resolve_compile(mode)
        if resolved is not None and self.backend != "torch":
            raise ConfigError(
                f"compile is for the torch backend; the {self.backend} backend compiles its "
                "towers itself: drop compile="
            )
        if resolved is None:
            self._compiled_encoder = self.compile = None
            return
        example = torch.zeros(
            (self.batch_size, 3, self.image_size, self.image_size), device=self.device, dtype=self.dtype
        ).contiguous(memory_format=torch.channels_last)
        self._compiled_encoder = compile_image_encoder(self.model, resolved, example, self._autocast, self.name)
        self.compile = resolved

    def clear_text_cache(self) -> None:
        """Forget cached prompt embeddings (call after changing the model's weights)."""
        self._text_cache.clear()

    def save(self, path: str | os.PathLike) -> None:
        """Save the weights as safetensors; reload with ``load_clip(name, pretrained=path)``."""
        from safetensors.torch import save_model

        if self.precision == "int8" and self.backend == "torch":
            raise ConfigError(
                "an int8 model cannot be saved as CLIP weights (its image tower is quantised); "
                "save the model loaded with precision='fp32'"
            )
        save_model(self.model, str(path))


class _BoundMethod(torch.nn.Module):
    """A module whose forward is one method of another (``encode_image``), for ``functional_call``."""

    def __init__(self, model: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(*args)


def _call_with(model: torch.nn.Module, method: str, params: dict[str, torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
    """``model.<method>(*args)`` with some weights replaced by ``params`` (by parameter name)."""
    wrapper = _BoundMethod(model, method)
    named = {f"model.{k}": v for k, v in params.items()}
    return torch.func.functional_call(wrapper, named, args, strict=False)


#: Long prompts reported one by one per model; past these, one line says that more follow.
_LONG_PROMPT_REPORTS = 5


def _pad_id(tokenizer: object) -> int:
    """The id that fills a short prompt's row (0 for open_clip's BPE, the HF tokenizer's own)."""
    pad = getattr(getattr(tokenizer, "tokenizer", None), "pad_token_id", None)
    return 0 if pad is None else int(pad)


def token_count(tokenizer: object, text: str) -> int | None:
    """How many tokens ``text`` has for ``tokenizer``, start and end tokens included, before any
    cut to the context length; ``None`` for a tokenizer this does not know how to ask."""
    if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
        return len(tokenizer.encode(text)) + 2  # + start and end of text
    hf = getattr(tokenizer, "tokenizer", None)
    if callable(hf):  # open_clip's wrappers of Hugging Face tokenizers
        clean = getattr(tokenizer, "clean_fn", None)
        try:
            return len(hf(clean(text) if callable(clean) else text, verbose=False)["input_ids"])
        except Exception:  # noqa: BLE001 - an unusual tokenizer: say "more tokens" instead
            return None
    return None


def _abbreviate(text: str, width: int = 60) -> str:
    """The start and the end of a long prompt, with the middle elided."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    head = text[: width * 2 // 3].rsplit(" ", 1)[0]
    tail = text[-(width - len(head) - 5) :].split(" ", 1)[-1]
    return f"{head} ... {tail}"


def check_prompts(prompts: str | Sequence[str], what: str = "prompts") -> list[str]:
    """Normalise a prompt or list of prompts, rejecting empty and non-string ones."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise ConfigError(f"{what} must be a non-empty string or list of strings, got {prompts!r}")
    for p in prompts:
        if not isinstance(p, str):
            raise ConfigError(f"{what} must be strings, got {type(p).__name__}: {p!r}")
        if not p.strip():
            raise ConfigError(f"{what} must not be empty or blank strings, got {p!r}")
    return list(prompts)


def load_clip(
    spec: str,
    device: str | torch.device | None = None,
    precision: str = "auto",
    pretrained: str | os.PathLike | None = None,
    *,
    cache_dir: str | None = None,
    batch_size: int | None = None,
    resize_mode: str = "squash",
    fast_resize: bool | None = None,
    compile: bool | str = False,
    amp_dtype: str | None = None,
    backend: str = "auto",
    threads: int | str | None = None,
    calibration: FrameBatch | None = None,
) -> ClipModel:
    """Load a CLIP model for rewards; see the module docstring for the forms of ``spec``.

    Args:
        spec: ``"ARCH/TAG"``, ``"ARCH"``, ``"hf-hub:org/repo"`` or ``"vlmrm-tiny"``.
        device: ``None`` picks CUDA when available, else CPU.
        precision: ``"fp32"`` (reproduces the reference numbers), ``"bf16"``, ``"fp16"``
            (weights cast), ``"amp"`` (autocast), ``"int8"`` (CPU only: int8 matmuls in the
            image tower, ~2× fp32; see :mod:`vlmrm.quantize`) or ``"auto"`` (fp16 on CUDA,
            fp32 on CPU).
        pretrained: a local weights file, used with a bare architecture name.
        cache_dir: Hugging Face cache directory (default: the hub's own).
        batch_size: frames per image-tower call (default 256 on CUDA; on CPU as many as
            keep the largest activation under ~20 MB: 34 for ViT-B-32, 4 for ViT-L-14).
        resize_mode: ``"squash"`` (reference), ``"center_crop"`` or ``"pad"``.
        fast_resize: resize uint8 frames before converting them to float (much faster on
            CPU, not bit-identical to the reference). Default: on for reduced precision,
            off for fp32 so that fp32 reproduces the reference numbers.
        compile: ``torch.compile`` the image tower at load (``True`` or a mode such as
            ``"reduce-overhead"``; see :mod:`vlmrm.compiling`). Worth it on GPUs; costs tens
            of seconds at load and needs Triton (CUDA) or a C++ compiler (CPU).
        amp_dtype: with ``precision="amp"``, autocast to ``"fp16"`` or ``"bf16"`` instead of
            the device's natural dtype (see :func:`training_precision`).
        backend: ``"auto"`` (torch, unless ``precision="auto"`` on a CPU measures OpenVINO
            faster), ``"torch"``, or ``"openvino"`` (CPU only, the ``openvino`` extra: the image
            and text towers run in OpenVINO, precision ``fp32`` or ``int8``; see
            :mod:`vlmrm.openvino_backend`). Everything above the towers is shared.
        threads: CPU threads of the model's tower calls: ``"auto"`` (the policy of every
            command, :mod:`vlmrm.runtime.threads`) or ``N``. Default: the count a command
            applied for the process, else ``"auto"``.
        calibration: uint8 frames ``(N, H, W, 3)`` that calibrate ``backend="openvino",
            precision="int8"`` (frames of your env or videos; default: smooth random scenes).
    """
    if amp_dtype not in (None, "fp16", "bf16"):
        raise ConfigError(f"amp_dtype must be 'fp16', 'bf16' or None, got {amp_dtype!r}")
    register_model_configs()
    backend = check_backend(backend)
    dev = resolve_device(device)
    if threads is None:
        threads = process_threads() or "auto"
    thread_count = resolve_threads(check_threads(threads))
    announce_threads()  # a command's thread line, once, with its setup
    if backend == "openvino":
        if dev.type != "cpu":
            raise ConfigError(f"backend='openvino' runs on the CPU; use device='cpu' (got {dev.type!r})")
        from vlmrm.openvino_backend import require_openvino

        require_openvino(for_int8=precision == "int8")  # before anything is loaded
    measure = precision == "auto" and dev.type == "cpu"
    prec = resolve_precision(precision, dev)
    if backend == "openvino" and prec not in ("fp32", "int8"):
        raise ConfigError(f"backend='openvino' runs precision 'fp32' or 'int8' (or 'auto'), not {prec!r}")
    compile_mode = resolve_compile(compile)
    if resize_mode not in RESIZE_MODES:
        raise ConfigError(f"unknown resize_mode {resize_mode!r}; choose one of {RESIZE_MODES}")
    arch, tag = parse_spec(spec)
    if tag is None and pretrained is not None and is_tag(arch, pretrained):
        # open_clip's own call pattern: load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
        spec, tag, pretrained = f"{arch}/{pretrained}", os.fspath(pretrained), None
    if tag is not None and pretrained is not None:
        raise ConfigError(
            f"give either a pretrained tag ({spec!r}) or a weights file (pretrained=...), not both"
        )
    # open_clip's fp16/bf16 casts matmul weights and keeps LayerNorm in fp32 (as OpenAI did);
    # "amp" keeps fp32 weights and autocasts at call time.
    oc_precision = prec if prec in ("fp16", "bf16") else "fp32"
    model, mean, std = create_model(arch, tag, pretrained, oc_precision, dev, cache_dir)
    model.eval()
    if measure:  # the fastest faithful CPU path, measured once (vlmrm.cpu_choice)
        backend, prec, fast_resize = _choose_cpu_path(
            model, spec, arch, backend, thread_count, resize_mode, fast_resize
        )
    elif backend == "auto":
        backend = "torch"
    if prec == "int8" and backend == "torch":
        quantize_image_tower(model)
    visual = model.visual
    size = visual.image_size
    size = int(size if isinstance(size, int) else size[0])
    mean = tuple(getattr(visual, "image_mean", None) or mean)
    std = tuple(getattr(visual, "image_std", None) or std)
    tokenizer = open_clip.get_tokenizer(arch)
    clip = ClipModel(
        model=model,
        tokenizer=tokenizer,
        name=spec if pretrained is None else f"{arch}@{os.fspath(pretrained)}",
        device=dev,
        precision=prec,
        image_size=size,
        mean=mean,
        std=std,
        batch_size=int(batch_size or (256 if dev.type == "cuda" else default_cpu_batch(model))),
        resize_mode=resize_mode,
        fast_resize=(prec != "fp32") if fast_resize is None else bool(fast_resize),
        amp_dtype=amp_dtype if prec == "amp" else None,
        backend=backend,
        threads=thread_count,
    )
    if backend == "openvino":
        _attach_openvino(clip, calibration)
    if compile_mode is not None:
        clip.enable_compile(compile_mode)
    return clip


def _choose_cpu_path(
    model: torch.nn.Module, name: str, arch: str, backend: str, threads: int,
    resize_mode: str, fast_resize: bool | None,
) -> tuple[str, str, bool | None]:
    """``precision="auto"`` on CPU → (backend, precision, fast_resize), printed once."""
    import sys

    from vlmrm.cpu_choice import choose

    size = model.visual.image_size
    size = int(size if isinstance(size, int) else size[0])
    probe = ClipModel(model=model, tokenizer=open_clip.get_tokenizer(arch), name=name,
                      device=torch.device("cpu"), precision="fp32", image_size=size,
                      resize_mode=resize_mode, fast_resize=True)  # fmt: skip
    backends = ("torch", "openvino") if backend == "auto" else (backend,)
    choice = choose(model, name, size, threads, backends, probe.preprocess, probe.tokenizer)
    if choice.measured:  # a tower too small to gain runs fp32 without a word
        print(choice.line(name), file=sys.stderr, flush=True)
    if choice.precision != "fp32" and fast_resize is None:
        fast_resize = True
    return choice.backend, choice.precision, fast_resize


def _attach_openvino(clip: ClipModel, calibration: FrameBatch | None) -> None:
    """Give ``clip`` OpenVINO image and text towers (converted now, or read from the cache)."""
    from vlmrm.openvino_backend import build_towers

    def model_input(frames: FrameBatch) -> torch.Tensor:
        return clip.preprocess(frames)

    with using_threads(clip.threads):
        image, text = build_towers(
            clip.model, clip.name, clip.image_size, clip.context_length, clip.precision,
            int(clip.threads or 1), model_input, calibration,
        )
    clip._image_engine, clip._text_engine = image, text
