"""Error types with messages written for the user, not for the stack trace.

Every check in the toolkit raises one of these (or a plain ``ValueError``/``TypeError``)
with a message that names the problem and how to fix it, so that bad input never
surfaces as an obscure failure deep inside torch.
"""

from __future__ import annotations

import sys
import warnings


class VLMRMError(Exception):
    """Base class of the toolkit's own errors."""


class ConfigError(VLMRMError, ValueError):
    """A user-supplied setting (argument, config value, prompt) is invalid."""


class WeightsNotFoundError(VLMRMError, FileNotFoundError):
    """Pretrained weights are neither cached locally nor downloadable right now."""


class VLMRMWarning(UserWarning):
    """Base class of the toolkit's own warnings: a result that is still computed, but not
    what the user probably meant. Filter them with ``warnings.filterwarnings("ignore",
    category=vlmrm.VLMRMWarning)``; commands print each as one ``warning: ...`` line."""


class LongPromptWarning(VLMRMWarning):
    """A prompt has more tokens than the text tower reads; the tokens past the context
    length are cut off, so they do not change the embedding or the reward."""


def warn(message: str, category: type[Warning] = VLMRMWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside this toolkit.

    A toolkit warning is about the user's input (a prompt, a file), so the location
    Python shows with it should be the user's line, not ours (what ``skip_file_prefixes``
    does from Python 3.12 on). Frames of torch's ``inference_mode``/``no_grad`` decorators
    around our functions are skipped too.
    """
    level, frame = 2, sys._getframe(1)  # stacklevel 2: warn's caller
    while frame is not None and _ours(frame.f_globals.get("__name__", "")):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _ours(module: str) -> bool:
    return module == "vlmrm" or module.startswith("vlmrm.") or module == "torch.utils._contextlib"
