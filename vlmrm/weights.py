"""Where a CLIP's weights come from: open_clip tags, the Hugging Face cache, local files.

:func:`create_model` builds the open_clip module for every way a user names weights
(``ARCH/TAG``, ``ARCH`` with ``pretrained=`` a tag or a file, ``hf-hub:``, seeded random
weights, ``vlmrm-tiny``), and fails within seconds with a message that says how to get
missing weights: the hub is probed once with a short timeout instead of letting the
download retry for a minute. :mod:`vlmrm.models` wraps the module in a :class:`ClipModel`.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import open_clip
import torch

from vlmrm.errors import ConfigError, WeightsNotFoundError
from vlmrm.runtime.paths import missing_reason

TINY = "vlmrm-tiny"
RANDOM_WEIGHTS_SEED = 0
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


def register_model_configs() -> None:
    """Make the package's architectures (``vlmrm-tiny``) known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One short TCP connect to the hub endpoint, so offline machines fail in seconds."""
    try:
        from huggingface_hub import constants

        endpoint = getattr(constants, "ENDPOINT", None) or "https://huggingface.co"
    except Exception:  # pragma: no cover - very old huggingface_hub
        endpoint = "https://huggingface.co"
    parsed = urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _weights_help(spec: str) -> str:
    return (
        f"To use {spec!r}: (1) on a machine with internet, run "
        f"`python -c \"import vlmrm; vlmrm.load_clip('{spec}')\"` once to fill the Hugging Face "
        "cache (HF_HOME, default ~/.cache/huggingface) and copy the cache here; "
        "(2) set HF_HUB_OFFLINE=1 to use only the cache; or (3) pass a local weights file: "
        "load_clip('ARCH', pretrained='/path/to/weights.safetensors')."
    )


def _resolve_pretrained_file(arch: str, tag: str, cache_dir: str | None) -> str:
    """Return a local path of the weights of ``arch/tag``, downloading only when the hub answers."""
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    spec = f"{arch}/{tag}"
    hf_hub = (cfg.get("hf_hub") or "").rstrip("/")
    if hf_hub:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        # "org/repo" or "org/repo/filename"
        parts = hf_hub.split("/")
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
        candidates = (filename,) if filename else _HF_WEIGHT_FILES
        for name in candidates:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
        if _offline_env():
            raise WeightsNotFoundError(
                f"weights for {spec!r} (hub repo {repo_id!r}) are not in the local cache and "
                f"HF_HUB_OFFLINE is set. {_weights_help(spec)}"
            )
        if not _hub_reachable():
            raise WeightsNotFoundError(
                f"weights for {spec!r} are not in the local cache and the Hugging Face hub "
                f"cannot be reached (offline?). {_weights_help(spec)}"
            )
        last: Exception | None = None
        for name in candidates:
            try:
                return hf_hub_download(repo_id, name, cache_dir=cache_dir)
            except Exception as exc:  # noqa: BLE001 - try the next file name, report the last
                last = exc
        raise WeightsNotFoundError(
            f"could not download weights for {spec!r} from hub repo {repo_id!r}: {last}. "
            f"{_weights_help(spec)}"
        )
    url = cfg.get("url") or ""
    if not url:
        raise WeightsNotFoundError(f"open_clip knows no download location for {spec!r}")
    root = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
    local = root / os.path.basename(url)
    if local.is_file():
        return str(local)
    if _offline_env() or not _hub_reachable():
        raise WeightsNotFoundError(
            f"weights for {spec!r} are not cached at {local} and cannot be downloaded now. "
            f"{_weights_help(spec)}"
        )
    from open_clip.pretrained import download_pretrained_from_url

    return download_pretrained_from_url(url, cache_dir=str(root))


@contextlib.contextmanager
def _quiet_open_clip():
    """Silence open_clip's "no pretrained weights" log line: we load weights ourselves."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _check_arch(arch: str) -> None:
    known = open_clip.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
        hint = f" Did you mean one of {close}?" if close else ""
        raise ConfigError(
            f"unknown CLIP architecture {arch!r}.{hint} See open_clip.list_models() for all "
            f"{len(known)} architectures, or use {TINY!r} for a small test model."
        )


def _check_tag(arch: str, tag: str) -> None:
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        hint = f"known tags: {tags}" if tags else "open_clip has no pretrained weights for it"
        raise ConfigError(
            f"unknown pretrained tag {tag!r} for architecture {arch!r}; {hint}. "
            f"For a local weights file use load_clip({arch!r}, pretrained='path/to/file')."
        )


def is_tag(arch: str, pretrained: str | os.PathLike) -> bool:
    """Whether ``pretrained`` is an open_clip tag of ``arch`` rather than a weights file."""
    value = os.fspath(pretrained)
    if os.path.exists(value) or arch.startswith("hf-hub:"):
        return False
    register_model_configs()
    return arch in open_clip.list_models() and value in open_clip.list_pretrained_tags_by_model(arch)


def _weights_file(arch: str, pretrained: str | os.PathLike) -> str:
    path = os.fspath(pretrained)
    if not os.path.isfile(path):
        reason = missing_reason(path) or "is a folder, not a file"
        raise WeightsNotFoundError(
            f"weights file {path!r} {reason}; pass the path of a "
            f".safetensors/.pt/.bin file saved from a {arch!r} model, or an open_clip tag of "
            f"{arch!r} (open_clip.list_pretrained_tags_by_model({arch!r}))"
        )
    return path


def _warn_random(arch: str) -> None:
    warnings.warn(
        f"loading {arch!r} with RANDOM weights (seed {RANDOM_WEIGHTS_SEED}); rewards are "
        f"meaningless. Use '{arch}/<tag>' (e.g. one of "
        f"{open_clip.list_pretrained_tags_by_model(arch)[:3]}) for pretrained weights.",
        UserWarning,
        stacklevel=4,
    )


def _load_weights(model: torch.nn.Module, arch: str, weights_file: str) -> None:
    try:
        open_clip.load_checkpoint(model, weights_file)
    except Exception as exc:
        raise ConfigError(
            f"could not load weights file {weights_file!r} into architecture {arch!r}: "
            f"{str(exc).splitlines()[0][:300]}. Check that the file was saved from a "
            f"{arch!r} model (ClipModel.save or an open_clip checkpoint)."
        ) from exc


def create_model(
    arch: str,
    tag: str | None,
    pretrained: str | os.PathLike | None,
    oc_precision: str,
    dev: torch.device,
    cache_dir: str | None,
) -> tuple[torch.nn.Module, tuple[float, ...], tuple[float, ...]]:
    """The open_clip module with its weights (tag, file, hub or seeded random) and its image mean/std."""
    mean, std = OPENAI_MEAN, OPENAI_STD
    if arch.startswith("hf-hub:"):
        if not _offline_env() and not _hub_reachable():
            raise WeightsNotFoundError(
                f"{arch!r} needs the Hugging Face hub, which cannot be reached. {_weights_help(arch)}"
            )
        model = open_clip.create_model(arch, precision=oc_precision, device=dev, cache_dir=cache_dir)
        return model, mean, std
    _check_arch(arch)
    weights_file: str | None = None
    quick_gelu = False
    if tag is not None:
        _check_tag(arch, tag)
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        quick_gelu = bool(cfg.get("quick_gelu", False))
        mean = tuple(cfg.get("mean") or mean)
        std = tuple(cfg.get("std") or std)
        weights_file = _resolve_pretrained_file(arch, tag, cache_dir)
    elif pretrained is not None:
        weights_file = _weights_file(arch, pretrained)
    elif arch != TINY:
        _warn_random(arch)
    with torch.random.fork_rng(devices=[]), _quiet_open_clip():
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = open_clip.create_model(
            arch,
            pretrained=None,
            precision=oc_precision,
            device="cpu",
            force_quick_gelu=quick_gelu,
            cache_dir=cache_dir,
        )
    if weights_file is not None:
        _load_weights(model, arch, weights_file)
    return model.to(dev), mean, std
