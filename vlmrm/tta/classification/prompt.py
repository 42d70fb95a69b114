"""A CoOp-style prompt learner on open_clip's text tower.

Every class prompt is ``[SOT] ctx_1 … ctx_n <class name> . [EOT]``. The ``n`` context
token embeddings are learnable vectors shared by all classes (initialised from the token
embeddings of ``ctx_init``, "a photo of a"); the class-name tokens and the rest stay the
frozen token embeddings. Only the context is adapted, so the text tower itself is never
modified and resetting means forgetting one small ``(n, width)`` tensor.

The learner takes a *batch* of contexts ``(B, n, width)`` and returns ``(B, C, D)`` class
embeddings: several test inputs can be adapted at once with independent contexts.

Why this module runs the text transformer itself rather than
:meth:`ClipModel.text_features`: the prompts it encodes are not token ids. The context
positions hold learned vectors that no token has, so the forward pass starts from token
*embeddings* (``token_embedding`` is skipped for the context); after that it is the text
tower's own layers, and with the initial context it reproduces ``text_features`` exactly
(tested). Tokenising goes through :meth:`ClipModel.tokenize`.

Speed: with a causal attention mask and pooling at the end-of-text token, outputs at the
EOT position depend only on the tokens before it, so sequences are cut after the longest
prompt's EOT (≈ 20 of 77 positions for class-name prompts) with identical results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel, check_prompts

_PLACEHOLDER = "X"


class _TextParts:
    """The pieces of an open_clip transformer text tower (built-in CLIP or ``model.text``)."""

    def __init__(self, model: nn.Module) -> None:
        tower = getattr(model, "text", None)
        src = tower if tower is not None else model
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if not all(hasattr(src, n) for n in needed):
            raise ConfigError(
                f"prompt learning needs an open_clip transformer text tower, but this model's text "
                f"tower is {type(src).__name__}; use mode=image to adapt the image tower instead"
            )
        if getattr(src, "cls_emb", None) is not None:
            raise ConfigError(
                "prompt learning does not support text towers with a class token (CoCa); use mode=image"
            )
        self.token_embedding = src.token_embedding
        self.positional_embedding = src.positional_embedding
        self.transformer = src.transformer
        self.ln_final = src.ln_final
        self.text_projection = getattr(src, "text_projection", None)
        self.attn_mask = getattr(src, "attn_mask", None)
        self.pool_type = getattr(src, "text_pool_type", None) or getattr(src, "pool_type", "argmax")
        self.eos_id = getattr(src, "text_eos_id", None) or getattr(src, "eos_id", None)
        if getattr(src, "use_pad_mask", False):
            raise ConfigError(
                "prompt learning does not support text towers with a padding mask; use mode=image"
            )

    @property
    def causal(self) -> bool:
        return self.attn_mask is not None and self.pool_type in ("argmax", "eos")


def load_learned_context(path: str | os.PathLike) -> torch.Tensor:
    """The generic context ``(n_ctx, width)`` of a saved CoOp prompt learner.

    Reads CoOp's ``prompt_learner/model.pth.tar-N`` (``{"state_dict": {"ctx": ...}}``), a
    bare state dict with ``ctx`` (or ``prompt_learner.ctx``), or a saved tensor.
    """
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line for the user
        raise ConfigError(f"cannot read the prompt learner {os.fspath(path)!r}: {exc}") from None
    if isinstance(obj, dict):
        obj = obj.get("state_dict", obj)
        obj = obj.get("ctx", obj.get("prompt_learner.ctx")) if isinstance(obj, dict) else obj
    if not isinstance(obj, torch.Tensor):
        raise ConfigError(f"{os.fspath(path)!r} holds no prompt context ('ctx' in its state_dict)")
    if obj.ndim != 2:
        raise ConfigError(
            f"the context in {os.fspath(path)!r} has shape {tuple(obj.shape)}; only a generic "
            "(n_ctx, width) context is supported, not class-specific contexts"
        )
    return obj.float()


class PromptLearner(nn.Module):
    """Class embeddings from learnable context vectors (CoOp, class token at the end).

    Args:
        clip: the policy CLIP.
        classnames: the class names (``"a photo of a {name}."`` with the default context).
        n_ctx: number of context tokens; with ``ctx_init`` it is the token count of the
            initial words (4 for "a photo of a").
        ctx_init: initial words of the context, a saved CoOp prompt learner (a file: its
            learned context is the start, as the RLCF/TPT reference scripts do), or ``""``
            for random N(0, 0.02²) vectors.
    """

    def __init__(
        self,
        clip: ClipModel,
        classnames: Sequence[str],
        n_ctx: int = 4,
        ctx_init: str = "a photo of a",
    ) -> None:
        super().__init__()
        classnames = check_prompts(list(classnames), "class names")
        self.parts = _TextParts(clip.model)
        emb = self.parts.token_embedding
        device = emb.weight.device
        learned = None
        if ctx_init and os.path.isfile(os.path.expanduser(str(ctx_init))):
            learned = load_learned_context(os.path.expanduser(str(ctx_init)))
            if learned.shape[1] != emb.weight.shape[1]:
                raise ConfigError(
                    f"the saved context is {learned.shape[1]} wide but this text tower's tokens are "
                    f"{emb.weight.shape[1]}: it was learned for another CLIP"
                )
            ctx_init, n_ctx = "", learned.shape[0]
        ctx_init = (ctx_init or "").strip().replace("_", " ")
        if ctx_init:
            init_tokens = clip.tokenize([ctx_init])[0]
            n_ctx = int((init_tokens != 0).sum()) - 2  # without SOT and EOT
            if n_ctx < 1:
                raise ConfigError(f"ctx_init {ctx_init!r} has no tokens")
            prefix = ctx_init
        else:
            if int(n_ctx) < 1:
                raise ConfigError(f"n_ctx must be a positive integer, got {n_ctx}")
            n_ctx = int(n_ctx)
            prefix = " ".join([_PLACEHOLDER] * n_ctx)
        texts = [f"{prefix} {name.replace('_', ' ')}." for name in classnames]
        tokens = clip.tokenize(texts).to(device)
        if (tokens[:, -1] != 0).any():
            raise ConfigError("some class names are too long for the text tower's context length")
        with torch.no_grad():
            embedded = emb(tokens)
        self.n_ctx = n_ctx
        self.classnames = classnames
        self.texts = texts
        length = tokens.shape[1]
        if self.parts.causal:
            last = (
                tokens.argmax(-1)
                if self.parts.pool_type == "argmax"
                else (tokens == self.parts.eos_id).int().argmax(-1)
            )
            length = int(last.max()) + 1
        self.length = length
        self.register_buffer("tokens", tokens[:, :length], persistent=False)
        self.register_buffer("prefix", embedded[:, :1].detach(), persistent=False)
        self.register_buffer("suffix", embedded[:, 1 + n_ctx : length].detach(), persistent=False)
        if learned is not None:
            ctx = learned.to(device)
        elif ctx_init:
            ctx = embedded[0, 1 : 1 + n_ctx].detach().clone()
        else:
            gen = torch.Generator().manual_seed(0)
            ctx = torch.randn(n_ctx, emb.weight.shape[1], generator=gen).to(device) * 0.02
        self.register_buffer("init_ctx", ctx.float(), persistent=False)

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        """Unit class embeddings ``(B, C, D)`` for contexts ``(B, n_ctx, W)`` (or ``(C, D)`` for ``(n_ctx, W)``).

        The one text-tower forward outside :class:`~vlmrm.models.ClipModel`: its input is
        learned context embeddings spliced between frozen token embeddings, for which no
        token ids exist (see the module docstring).
        """
        single = ctx.ndim == 2
        if single:
            ctx = ctx.unsqueeze(0)
        b, c = ctx.shape[0], self.tokens.shape[0]
        p = self.parts
        cast = (
            p.transformer.get_cast_dtype()
            if hasattr(p.transformer, "get_cast_dtype")
            else ctx.dtype
        )
        x = torch.cat(
            [
                self.prefix.unsqueeze(0).expand(b, -1, -1, -1),
                ctx.unsqueeze(1).expand(-1, c, -1, -1).to(self.prefix.dtype),
                self.suffix.unsqueeze(0).expand(b, -1, -1, -1),
            ],
            dim=2,
        ).reshape(b * c, self.length, -1)
        x = x.to(cast) + p.positional_embedding[: self.length].to(cast)
        mask = p.attn_mask[: self.length, : self.length] if p.attn_mask is not None else None
        x = p.transformer(x, attn_mask=mask)
        x = p.ln_final(x)
        tokens = self.tokens.repeat(b, 1)
        x = text_global_pool(x, tokens, p.pool_type, eos_token_id=p.eos_id)
        if p.text_projection is not None:
            x = (
                p.text_projection(x)
                if isinstance(p.text_projection, nn.Linear)
                else x @ p.text_projection
            )
        x = F.normalize(x.float(), dim=-1).reshape(b, c, -1)
        return x[0] if single else x
