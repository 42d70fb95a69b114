"""A CLIP model spec read without loading the model: its architecture and input size.

The training config is checked before torch is imported, and some settings depend on the
reward model: ``env.render_size=auto`` draws frames at the model's input size, so that no
frame is drawn large only to be shrunk again before the image tower (a ``vlmrm-tiny`` run
would otherwise draw 224² frames and resize every one to 64²). The size is read from the
architecture's JSON config (open_clip's own folder of configs, or this package's), which
needs neither torch nor the weights.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from vlmrm.errors import ConfigError

#: Frame size when a spec's input size cannot be read without loading it (``hf-hub:``
#: models, architectures added at run time): the input size of open_clip's common CLIPs.
DEFAULT_INPUT_SIZE = 224
_OWN_CONFIGS = Path(__file__).parent / "model_configs"


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"ARCH/TAG"`` → ``(ARCH, TAG)``; ``"ARCH"`` → ``(ARCH, None)``; ``hf-hub:`` as is."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model spec must be a string like 'ViT-B-32/openai', got {spec!r}")
    spec = spec.strip()
    if spec.startswith("hf-hub:"):
        return spec, None
    arch, _, tag = spec.partition("/")
    return arch, (tag or None)


def _config_folders() -> list[Path]:
    folders = [_OWN_CONFIGS]
    found = importlib.util.find_spec("open_clip")  # the package's location, without importing it
    if found is not None and found.origin is not None:
        folders.append(Path(found.origin).parent / "model_configs")
    return folders


def clip_input_size(spec: str) -> int | None:
    """The image tower's input side in pixels for a model spec, or ``None`` when unknown.

    Unknown means no JSON config of that architecture is installed (a ``hf-hub:`` model, a
    typo that :func:`vlmrm.load_clip` will name later): callers pick their own default.
    """
    arch, _ = parse_spec(spec)
    if arch.startswith("hf-hub:"):
        return None
    for folder in _config_folders():
        path = folder / f"{arch}.json"
        if not path.is_file():
            continue
        try:
            size = json.loads(path.read_text())["vision_cfg"]["image_size"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if isinstance(size, (list, tuple)):  # (height, width): towers here are square
            size = max(size)
        return int(size) if isinstance(size, (int, float)) and size > 0 else None
    return None


def render_size_for(setting: object, model_spec: str | None) -> list[int]:
    """``env.render_size`` resolved: ``auto`` → the reward model's input size (square).

    With ``auto`` and no reward model (``reward=ground_truth``: frames only for videos), or a
    model whose size is unknown here, frames are :data:`DEFAULT_INPUT_SIZE` pixels a side.
    An explicit ``[width, height]`` is returned as given (checked by the caller).
    """
    if setting != "auto":
        return setting  # type: ignore[return-value]
    size = clip_input_size(model_spec) if model_spec is not None else None
    side = size or DEFAULT_INPUT_SIZE
    return [side, side]
