"""A CLIP-prefix captioner (ClipCap / CapDec): frozen CLIP → trained mapper → frozen LM.

The image's unit CLIP embedding (the policy CLIP's :meth:`~vlmrm.models.ClipModel.embed_images`)
goes through the :class:`~vlmrm.caption.mapper.PrefixMapper` to ``P`` prefix embeddings;
the language model continues them with the caption. Only the mapper has trainable
weights, and every method that runs it takes ``params=`` (replacement mapper weights by
name, ``torch.func.functional_call``), so test-time adaptation trains copies and never
touches the loaded mapper.

The caption's cross-entropy (:meth:`ClipCaptioner.caption_nll`) is the mean over the
caption's own tokens, its end-of-text token included and **padding masked**. (The RLCF
reference averages over the padded length, pad tokens included, so short captions in a
batch of long ones are down-weighted; we do not copy that.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vlmrm.caption.lm import CaptionVocab, input_embeddings, lm_width
from vlmrm.caption.mapper import MapperConfig, PrefixMapper
from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel

#: Placeholder scored for a caption that decodes to nothing (a random LM may end at once).
EMPTY = "."


@dataclass
class Caption:
    """A generated caption: its text and the token ids the LM produced (end-of-text excluded)."""

    text: str
    ids: list[int]


def mapper_for(clip: ClipModel, lm: torch.nn.Module, **shape) -> PrefixMapper:
    """A fresh mapper from ``clip``'s embedding size to ``lm``'s width (``shape``: :class:`MapperConfig`)."""
    return PrefixMapper(MapperConfig(clip_dim=clip.embed_dim, lm_dim=lm_width(lm), **shape))


def save_mapper(
    mapper: PrefixMapper, path: str | os.PathLike, extra: dict[str, str] | None = None
) -> None:
    """The mapper's weights as safetensors, its shape (and ``extra``) in the metadata."""
    import json

    from safetensors.torch import save_model

    meta = {"mapper": json.dumps(mapper.config.to_dict()), **(extra or {})}
    save_model(mapper, os.fspath(path), metadata=meta)


def load_mapper(path: str | os.PathLike, device: torch.device | str = "cpu") -> PrefixMapper:
    """A mapper saved by :func:`save_mapper` (the captioner training writes ``mapper.safetensors``)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_model

    path = os.fspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise ConfigError(
            f"captioner={path!r} does not exist; train one with python -m vlmrm.caption.train"
        )
    try:
        with safe_open(path, "pt") as fh:
            meta = fh.metadata() or {}
        config = MapperConfig(**json.loads(meta["mapper"]))
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"{path!r} is not a captioner mapper saved by vlmrm ({exc})") from None
    mapper = PrefixMapper(config)
    load_model(mapper, path, device=str(device))
    return mapper.to(device)


class ClipCaptioner:
    """CLIP image → caption, with a trainable mapper between a frozen CLIP and a frozen LM.

    Args:
        clip: the CLIP whose unit image embeddings feed the mapper (ViT-B/16 in RLCF).
        lm: a frozen ``transformers`` causal LM (:func:`~vlmrm.caption.lm.load_lm`).
        vocab: its :class:`~vlmrm.caption.lm.CaptionVocab`.
        mapper: the :class:`PrefixMapper` (default: a fresh one of the reference shape).
        max_tokens: the longest caption generated, in LM tokens.
    """

    def __init__(
        self,
        clip: ClipModel,
        lm: torch.nn.Module,
        vocab: CaptionVocab,
        mapper: PrefixMapper | None = None,
        max_tokens: int = 30,
    ) -> None:
        self.clip, self.lm, self.vocab = clip, lm, vocab
        self.device = clip.device
        self.mapper = (mapper or mapper_for(clip, lm)).to(self.device)
        if self.mapper.config.clip_dim != clip.embed_dim or self.mapper.config.lm_dim != lm_width(
            lm
        ):
            c = self.mapper.config
            raise ConfigError(
                f"the mapper maps {c.clip_dim} → {c.lm_dim} but the CLIP gives {clip.embed_dim} and "
                f"the LM reads {lm_width(lm)}; use the CLIP and LM the mapper was trained with"
            )
        self.lm.to(self.device)
        self.max_tokens = int(max_tokens)
        self.amp_dtype = clip.autocast_dtype

    def autocast(self):
        """Mixed precision of the LM and mapper, following the CLIP's ``precision="amp"``."""
        if self.amp_dtype is not None:
            return torch.autocast(self.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()

    # -- the mapper --------------------------------------------------------------------

    def mapper_params(self) -> dict[str, torch.Tensor]:
        """Detached float32 copies of the mapper's weights (the start of adaptation)."""
        return {k: v.detach().float().clone() for k, v in self.mapper.named_parameters()}

    def prefix(
        self, embeddings: torch.Tensor, params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Prefix embeddings ``(B, P, D_lm)`` of unit CLIP embeddings ``(B, D_clip)``."""
        embeddings = embeddings.to(self.device).float().clone()  # inference tensors → autograd
        with self.autocast():
            if params is None:
                return self.mapper(embeddings)
            return torch.func.functional_call(self.mapper, params, (embeddings,), strict=False)

    def embed_images(self, images) -> torch.Tensor:
        """Unit CLIP embeddings of images (the frozen tower's inference encoder)."""
        return self.clip.embed_images(images)

    # -- generation --------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        prefix: torch.Tensor,
        num: int = 1,
        beams: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> list[list[Caption]]:
        """``num`` captions per prefix ``(B, P, D)``: beam search with ``beams`` beams
        (default ``num``), all returned; or nucleus sampling with ``top_p`` (seeded)."""
        beams = int(beams or num)
        if top_p is None and num > beams:
            raise ConfigError(f"beam search returns at most its {beams} beams, not {num} captions")
        kwargs = dict(
            inputs_embeds=prefix.detach(),
            attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device),
            max_new_tokens=self.max_tokens,
            min_new_tokens=1,
            num_return_sequences=num,
            eos_token_id=self.vocab.eos_id,
            pad_token_id=self.vocab.pad_id,
        )
        if top_p is not None:
            kwargs.update(do_sample=True, top_p=float(top_p), top_k=0, num_beams=1)
        else:
            kwargs.update(do_sample=False, num_beams=beams, early_stopping=True)
        rng = torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])
        with rng, self.autocast():
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.lm.generate(**kwargs)
        ids = out.sequences if hasattr(out, "sequences") else out
        captions = [self._caption(row.tolist()) for row in ids]
        return [captions[i * num : (i + 1) * num] for i in range(prefix.shape[0])]

    def _caption(self, ids: list[int]) -> Caption:
        if self.vocab.eos_id in ids:
            ids = ids[: ids.index(self.vocab.eos_id)]
        ids = [i for i in ids if i != self.vocab.pad_id]
        return Caption(self.vocab.decode(ids), ids)

    def caption(
        self, images, beams: int = 5, params: dict[str, torch.Tensor] | None = None
    ) -> list[str]:
        """The final caption of each image: ``beams``-beam search, lower-cased."""
        prefix = self.prefix(self.embed_images(images), params)
        return [c[0].text.lower() for c in self.generate(prefix, 1, beams)]

    # -- the caption likelihood --------------------------------------------------------

    def targets(
        self, captions: Sequence[Caption | str | Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded target ids ``(N, L)`` (each caption + end-of-text) and their mask."""
        seqs = []
        for c in captions:
            ids = (
                c.ids
                if isinstance(c, Caption)
                else self.vocab.encode(c)
                if isinstance(c, str)
                else c
            )
            seqs.append([int(i) for i in ids][: self.max_tokens] + [self.vocab.eos_id])
        length = max(len(s) for s in seqs)
        tokens = torch.full((len(seqs), length), self.vocab.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.float32)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1.0
        return tokens.to(self.device), mask.to(self.device)

    def token_logits(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The LM's logits ``(N, L, V)`` for each target token, reading prefix + earlier tokens."""
        p = prefix.shape[1]
        with self.autocast():
            emb = input_embeddings(self.lm)(tokens)
            inputs = torch.cat([prefix.to(emb.dtype), emb], dim=1)
            logits = self.lm(inputs_embeds=inputs).logits
        return logits[:, p - 1 : -1].float()

    def caption_nll(
        self, prefix: torch.Tensor, captions: Sequence[Caption | str | Sequence[int]]
    ) -> torch.Tensor:
        """Length-normalised cross-entropy of each caption given its prefix, ``(N,)``; pads masked."""
        tokens, mask = self.targets(captions)
        if prefix.shape[0] != tokens.shape[0]:
            raise ConfigError(f"{prefix.shape[0]} prefixes for {tokens.shape[0]} captions")
        return masked_nll(self.token_logits(prefix, tokens), tokens, mask)


def masked_nll(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sequence ``Σ_t m_t · CE(logits_t, tokens_t) / Σ_t m_t``: ``(N, L, V)``, ``(N, L)`` → ``(N,)``."""
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")
    return (ce * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
