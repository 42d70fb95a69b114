"""The frozen causal language model of a captioner and its vocabulary.

Any ``transformers`` causal LM works (OPT-125m in the reference). Its weights come from
the Hugging Face cache (``HF_HUB_OFFLINE=1`` is honoured) or a local folder; nothing is
downloaded when the cache lacks them — the error says how to get them.

:class:`CaptionVocab` is the little a captioner needs from a tokenizer (ids of a caption
without special tokens, text of ids, the end-of-text and padding ids), so a
``transformers`` tokenizer and open_clip's bundled BPE tokenizer (tests, smoke runs with
a randomly initialised LM: no download at all) serve alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from vlmrm.errors import ConfigError


@dataclass
class CaptionVocab:
    """Caption text ↔ token ids of the language model.

    Attributes:
        tokenizer: a ``transformers`` tokenizer or open_clip's ``SimpleTokenizer``.
        eos_id: the id that ends a caption (appended to training targets; stops generation).
        pad_id: the id that fills short captions in a batch (always masked out of losses).
    """

    tokenizer: Any
    eos_id: int
    pad_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> CaptionVocab:
        """Wrap a ``transformers`` tokenizer or open_clip's ``SimpleTokenizer``."""
        if hasattr(tokenizer, "eos_token_id") and tokenizer.eos_token_id is not None:
            pad = tokenizer.pad_token_id
            return cls(
                tokenizer,
                int(tokenizer.eos_token_id),
                int(tokenizer.eos_token_id if pad is None else pad),
            )
        encoder = getattr(tokenizer, "encoder", None)
        if isinstance(encoder, dict) and "<end_of_text>" in encoder:
            eos = int(encoder["<end_of_text>"])
            return cls(tokenizer, eos, eos)
        raise ConfigError(
            f"{type(tokenizer).__name__} is no tokenizer a captioner can use; give a transformers "
            "tokenizer or open_clip's SimpleTokenizer"
        )

    @property
    def is_hf(self) -> bool:
        return hasattr(self.tokenizer, "eos_token_id")

    def encode(self, text: str) -> list[int]:
        """Token ids of a caption, without special tokens."""
        if self.is_hf:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return [int(i) for i in self.tokenizer.encode(text)]

    def decode(self, ids: list[int]) -> str:
        """Caption text of ids (cut at the first end-of-text id)."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        if self.is_hf:
            return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return self.tokenizer.decode(ids).strip()


def input_embeddings(lm: torch.nn.Module) -> torch.nn.Module:
    """The LM's token embedding table."""
    return lm.get_input_embeddings()


def lm_width(lm: torch.nn.Module) -> int:
    """The LM's token embedding size (the width of the mapper's prefix)."""
    return int(input_embeddings(lm).weight.shape[-1])


def freeze(lm: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no gradients: the LM never trains (only the mapper does)."""
    lm.eval()
    for p in lm.parameters():
        p.requires_grad_(False)
    return lm


def load_lm(
    name: str, device: torch.device | str = "cpu", tokenizer: str | None = None
) -> tuple[torch.nn.Module, CaptionVocab]:
    """A frozen ``transformers`` causal LM and its vocabulary, from the cache or a folder.

    ``name``: a hub id (``facebook/opt-125m``) whose files are in the Hugging Face cache,
    or a local folder saved with ``save_pretrained``. ``tokenizer="clip"``: open_clip's
    bundled BPE instead of the LM's own tokenizer (an LM built over its 49408 ids).
    """
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:  # pragma: no cover - the caption extra is part of dev
        raise ConfigError("captioning needs transformers: pip install 'vlmrm[caption]'") from None
    local = os.path.isdir(os.path.expanduser(name))
    if not local and name.startswith(("/", ".", "~")):
        raise ConfigError(
            f"the language model {name!r} is no folder; give a saved model folder or a hub id"
        )
    path = os.path.expanduser(name) if local else name
    try:
        if tokenizer == "clip":
            import open_clip

            tok = open_clip.get_tokenizer("ViT-B-32")
        else:
            tok = AutoTokenizer.from_pretrained(path, local_files_only=not local and _offline())
        lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=not local and _offline())
    except OSError as exc:
        raise ConfigError(
            f"cannot load the language model {name!r} ({str(exc).splitlines()[0]}); put its weights in "
            f"the Hugging Face cache (huggingface-cli download {name}) or give a local folder"
        ) from None
    return freeze(lm.to(device)), CaptionVocab.from_tokenizer(tok)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
