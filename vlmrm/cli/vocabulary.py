"""The settings every command shares, so a key means the same thing everywhere.

Commands build their settings dataclass from these groups (dataclass inheritance), and
may re-declare a field to change its default or its docstring, never its meaning:

=============  ==============================================================================
key            meaning
=============  ==============================================================================
model          the CLIP: ``ARCH/TAG`` (open_clip pretrained tag), ``ARCH`` (random weights,
               or with ``pretrained=``), ``hf-hub:org/repo``, ``vlmrm-tiny``
pretrained     weights for a bare ``ARCH``: an open_clip tag or a local weights file
device         ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``
precision      ``auto``, ``fp32``, ``bf16``, ``fp16``, ``amp``, ``int8`` (see
               :data:`vlmrm.checks.PRECISIONS`)
backend        where the CLIP towers run: ``auto``, ``torch``, or ``openvino`` (CPU, the
               ``openvino`` extra; fp32 or int8); ``reward.backend`` in training
batch_size     how many items one batch holds (frames per CLIP call, pairs per step...)
threads        CPU threads of torch (and OpenVINO): ``auto`` (half the cores, fewer when
               worker processes or ranks share them) or ``N`` (:mod:`vlmrm.runtime.threads`)
out            the output folder of the command
seed           the random seed
progress       show progress bars (``false`` for logs)
=============  ==============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmrm.checks import (
    PRECISIONS,
    check_backend,
    check_device,
    check_model_spec,
    check_optional_int,
    check_precision,
)
from vlmrm.errors import ConfigError


@dataclass
class ClipSettings:
    """Which CLIP to load and how: the keys of :func:`vlmrm.load_clip`."""

    model: str = "ViT-B-32/openai"
    """The CLIP: ARCH/TAG (an open_clip pretrained tag, from the Hugging Face cache), ARCH
    with pretrained=, hf-hub:org/repo, or vlmrm-tiny (small random model for smoke runs)."""
    pretrained: str | None = None
    """Weights for a bare ARCH: an open_clip tag (laion2b_s34b_b79k) or a local
    .safetensors/.pt/.bin file, e.g. a tuned checkpoint."""
    device: str = "auto"
    """auto (cuda when present, else cpu), cpu, cuda, cuda:N."""
    precision: str = "auto"
    """auto (fp16 on CUDA, fp32 on CPU), fp32 (reference numbers), bf16, fp16, amp, int8
    (CPU fast path, check rank_fidelity first)."""
    batch_size: int | None = None
    """Frames per CLIP call (default: 256 on CUDA, on CPU sized to the model)."""
    backend: str = "auto"
    """Where the CLIP towers run: auto (torch, unless precision=auto on a CPU measures
    OpenVINO faster), torch, or openvino (CPU only, precision fp32 or int8; needs pip
    install "vlmrm[openvino]"; converted models are cached on disk)."""

    def check_clip(self, precisions: tuple[str, ...] = PRECISIONS) -> None:
        """Check the spelling of the CLIP settings (no torch imported)."""
        self.model = check_model_spec(self.model, self.pretrained)
        self.device = check_device(self.device)
        self.precision = check_precision(self.precision, precisions)
        self.batch_size = check_optional_int("batch_size", self.batch_size, 1)
        self.backend = check_backend(self.backend)
        if "int8" not in precisions:  # a command that trains through the CLIP
            self.check_torch_backend("this command")

    def check_torch_backend(self, what: str) -> None:
        """Commands that train through the CLIP need its torch towers (gradients)."""
        if check_backend(self.backend) == "openvino":
            raise ConfigError(
                f"{what} trains through the CLIP, which needs backend=torch; backend={self.backend} "
                "computes embeddings only (use it to score, record or train an agent)"
            )


@dataclass
class RunSettings:
    """Where a command writes, how it is seeded, and whether it draws progress bars."""

    out: str = "runs"
    """Output folder."""
    seed: int = 0
    """Random seed."""
    progress: bool = True
    """Show progress bars (false for plain logs)."""
    threads: Any = "auto"
    """CPU threads of torch: auto (half the cores, fewer when worker processes or ranks
    share them) or N; printed once when the command starts."""
