"""Checks of setting values that every layer shares, one copy each, free of torch.

The argument layer calls them while parsing (so a bad setting is refused before torch is
imported) and the library calls the same functions on its own arguments, so a value means
the same thing, and fails with the same message, from the command line and from Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import field, fields
from typing import Any

from vlmrm.errors import ConfigError

#: Every command's ``precision=`` and ``load_clip(precision=...)``. For reward inference the
#: reduced ones cast the weights (``int8``: the CPU fast path); for commands that train
#: weights (tuning, TTA) ``fp16``/``bf16``/``amp`` are mixed precision (fp32 weights,
#: autocast) and ``int8`` is refused. ``auto`` is the fastest faithful one for the device.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "amp", "int8")
#: Precisions a training command accepts.
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "amp")

#: The rank fidelity a fast path must keep: Spearman of its rewards with fp32 rewards.
RANK_FIDELITY_BAR = 0.999

#: ``backend=`` of every command and ``load_clip``: where the CLIP towers run.
BACKENDS = ("auto", "torch", "openvino")

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_alpha(alpha: Any, *, has_baseline: bool = True) -> float:
    """α of the goal-baseline reward: a finite number in [0, 1]; α > 0 needs a baseline.

    The one place α is checked: settings, :class:`vlmrm.CLIPReward` and its
    ``set_alpha``/``reward_from_embeddings`` all call it.
    """
    if isinstance(alpha, bool):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}")
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not (0.0 <= a <= 1.0):
        raise ConfigError(f"alpha must lie in [0, 1] (0: plain CLIP similarity, 1: full projection), got {alpha!r}")
    if a > 0 and not has_baseline:
        raise ConfigError(
            f"alpha={a:g} needs a baseline prompt (the projection direction is goal - baseline), "
            "e.g. baseline='a humanoid robot'; or use alpha=0"
        )
    return a


def check_alphas(value: Any, *, has_baseline: bool = True) -> list[float]:
    """One α or a non-empty list of them → a list of checked floats."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError("alpha must not be an empty list")
    return [check_alpha(a, has_baseline=has_baseline) for a in items]


def check_choice(name: str, value: Any, options: Sequence[str]) -> str:
    """``value`` must be one of ``options``."""
    if value not in options:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(map(str, options))}")
    return value


def check_precision(value: Any, options: Sequence[str] = PRECISIONS, name: str = "precision") -> str:
    """A precision name (see :data:`PRECISIONS`), lower-cased."""
    v = str(value).strip().lower() if value is not None else "auto"
    return check_choice(name, v, options)


def check_device(value: Any, name: str = "device") -> str:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Only the spelling is checked here; whether CUDA exists is checked when the device is
    used (:func:`vlmrm.models.resolve_device`).
    """
    v = "auto" if value is None else str(value).strip().lower()
    if not _DEVICE.match(v):
        raise ConfigError(f"{name}={value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return v


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """An integer ≥ ``minimum``; floats with an integral value (``1e6``) are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def integer(default: int, minimum: int = 0) -> Any:
    """A settings field that holds a whole number of at least ``minimum``, declared with its bound.

    The bound stands beside the field and its ``--help`` text, and :func:`check_integers`
    checks every such field, so a command's ``validate`` keeps no separate list of names that
    a new field could be left out of.
    """
    return field(default=default, metadata={"minimum": minimum})


def checked_integers(settings: Any) -> dict[str, int]:
    """The fields of a dataclass declared with :func:`integer`, checked, as ``{name: int}``."""
    return {
        f.name: check_int(f.name, getattr(settings, f.name), f.metadata["minimum"])
        for f in fields(settings)
        if "minimum" in f.metadata
    }


def check_integers(settings: Any) -> None:
    """Check, and make ``int``, every field of a settings dataclass declared with :func:`integer`."""
    for name, value in checked_integers(settings).items():
        setattr(settings, name, value)


def check_optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """``None`` (the default) or an integer ≥ ``minimum``."""
    return None if value is None else check_int(name, value, minimum)


def check_text(name: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_prompts_setting(name: str, value: Any) -> str | list[str]:
    """A prompt setting: one non-empty string, or a non-empty list of them (averaged).

    Lists come from the command line as ``goal='[kneeling,"on its knees"]'``; the reward
    averages the embeddings of a list's prompts (VLM-RM's several-prompt reward).
    """
    if isinstance(value, str):
        return check_text(name, value)
    if isinstance(value, Sequence):  # a list, or OmegaConf's ListConfig
        value = list(value)
        if not value:
            raise ConfigError(f"{name} is an empty list; give at least one prompt, e.g. {name}='[kneeling]'")
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(
                    f"{name} prompts must be non-empty strings, got {item!r} in {list(value)!r}; "
                    f"quote each prompt, e.g. {name}='[\"a\",\"b\"]'"
                )
        return [str(item) for item in value]
    raise ConfigError(f"{name} must be a prompt or a list of prompts, got {value!r}; quote it: {name}='...'")


def check_out_dir(value: Any, name: str = "out") -> str:
    """An output folder path that can be created: no part of it is a regular file.

    Checked with the settings, before any work, so ``out=<a path under a file>`` is one
    line instead of a ``NotADirectoryError`` at the first write.
    """
    import os
    from pathlib import Path

    text = check_text(name, value)
    path = Path(text).expanduser()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is" if part == path else f"is under {str(part)!r}, which is"
                raise ConfigError(f"{name}={text!r} {what} a file, not a folder; pass {name}=<a folder path>")
            if not os.access(part, os.W_OK | os.X_OK):
                raise ConfigError(f"{name}={text!r}: {str(part)!r} is not writable; pass {name}=<a writable folder>")
            break
    return text


def weights_key(name: str) -> str:
    """The setting that gives local weights for the model setting ``name``: ``model`` →
    ``pretrained``, ``reward_model`` → ``reward_pretrained``, ``reward.model`` →
    ``reward.pretrained``, ``base`` → ``base_pretrained``."""
    return name[: -len("model")] + "pretrained" if name.endswith("model") else f"{name}_pretrained"


def check_model_spec(value: Any, pretrained: Any = None, name: str = "model") -> str:
    """A CLIP model spec (``ARCH/TAG``, ``ARCH``, ``hf-hub:org/repo`` or ``vlmrm-tiny``).

    Refuses the retired ``ARCH@FILE`` form and a tag given twice, with the fix, which names
    the weights setting that goes with ``name`` (:func:`weights_key`).
    """
    spec = check_text(name, value).strip()
    weights = weights_key(name)
    if "@" in spec and not spec.startswith("hf-hub:"):
        arch, _, path = spec.partition("@")
        raise ConfigError(
            f"{name}={spec!r}: local weights are given with {weights}=, e.g. "
            f"{name}={arch} {weights}={path}"
        )
    if pretrained not in (None, "") and "/" in spec and not spec.startswith("hf-hub:"):
        raise ConfigError(
            f"{name}={spec!r} already names pretrained weights (the tag after '/'); give either "
            f"{name}=ARCH/TAG or {name}=ARCH {weights}=FILE_OR_TAG, not both"
        )
    return spec


#: ``torch.compile`` modes; ``True`` means ``"default"``.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_OFF = ("false", "off", "no", "none", "0", "")
_ON = ("true", "on", "yes", "1")


def resolve_compile(value: Any, key: str = "compile") -> str | None:
    """``False``/``None``/"false" → ``None``; ``True``/"true" → ``"default"``; a mode → itself."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _OFF:
            return None
        if text in _ON:
            return "default"
        if text in COMPILE_MODES:
            return text
    raise ConfigError(
        f"{key} must be true, false or a torch.compile mode ({', '.join(COMPILE_MODES)}), got {value!r}"
    )


def check_backend(value: Any) -> str:
    """``auto``, ``torch`` or ``openvino`` (any case); anything else is one error line."""
    backend = str(value).strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {value!r}; choose one of {', '.join(BACKENDS)}")
    return backend
