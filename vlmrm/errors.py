"""Error types with messages written for the user, not for the stack trace.

Every check in the toolkit raises one of these (or a plain ``ValueError``/``TypeError``)
with a message that names the problem and how to fix it, so that bad input never
surfaces as an obscure failure deep inside torch.
"""

from __future__ import annotations


class VLMRMError(Exception):
    """Base class of the toolkit's own errors."""


class ConfigError(VLMRMError, ValueError):
    """A user-supplied setting (argument, config value, prompt) is invalid."""


class WeightsNotFoundError(VLMRMError, FileNotFoundError):
    """Pretrained weights are neither cached locally nor downloadable right now."""
