"""Shared fixtures of the captioning tests: a tiny random LM, a captioner, a reward that is right.

Everything is built here, offline: a 2-layer GPT-2 from a ``transformers`` config over
open_clip's bundled BPE vocabulary, ``vlmrm-tiny`` as the captioner's CLIP, and drawn
images (red or blue squares).
"""

from __future__ import annotations

import numpy as np
import open_clip
import torch
import torch.nn as nn

import vlmrm
from vlmrm.caption.captioner import ClipCaptioner, mapper_for
from vlmrm.caption.lm import CaptionVocab, freeze
from vlmrm.models import ClipModel

VOCAB = 49408
EOT = 49407


def tiny_lm(seed: int = 0) -> nn.Module:
    """A frozen, randomly initialised 2-layer GPT-2 (no download)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_layer=2, n_embd=64, n_head=2, n_positions=128,
                        bos_token_id=EOT, eos_token_id=EOT)  # fmt: skip
    return freeze(GPT2LMHeadModel(config))


def clip_vocab() -> CaptionVocab:
    return CaptionVocab.from_tokenizer(open_clip.get_tokenizer("ViT-B-32"))


def tiny_captioner(seed: int = 0, max_tokens: int = 6) -> ClipCaptioner:
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
    lm = tiny_lm(seed)
    torch.manual_seed(seed + 1)
    mapper = mapper_for(clip, lm, prefix_length=4, layers=2, heads=2)
    return ClipCaptioner(clip, lm, clip_vocab(), mapper, max_tokens=max_tokens)


def squares(n: int, size: int = 64) -> np.ndarray:
    """``n`` images: alternately a red and a blue square on grey."""
    out = np.full((n, size, size, 3), 128, np.uint8)
    for i in range(n):
        out[i, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = (
            (220, 30, 30) if i % 2 == 0 else (30, 30, 220)
        )
    return out


class _BagOfWords(nn.Module):
    """A CLIP that is right by construction: an image embeds as its colour's direction, a
    text as the mean of per-token vectors, so captions whose tokens point the colour's way
    score higher."""

    def __init__(self, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.words = nn.Parameter(torch.randn(VOCAB, dim, generator=g), requires_grad=False)
        self.colours = nn.Parameter(torch.randn(3, dim, generator=g), requires_grad=False)
        self.logit_scale = nn.Parameter(torch.tensor(4.6), requires_grad=False)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3)) @ self.colours

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = ((tokens > 0) & (tokens < EOT - 1)).float().unsqueeze(-1)
        return (self.words[tokens] * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def right_reward() -> ClipModel:
    """The reward CLIP of :class:`_BagOfWords` behind the usual :class:`ClipModel` encoders."""
    return ClipModel(model=_BagOfWords(), tokenizer=open_clip.get_tokenizer("ViT-B-32"), name="bag-of-words",
                     device=torch.device("cpu"), precision="fp32", image_size=32)  # fmt: skip


def save_tiny_lm(path) -> str:
    """The tiny LM saved as a local folder (``lm=<folder> tokenizer=clip``)."""
    tiny_lm().save_pretrained(path)
    return str(path)


COLOURS = ("red", "blue")


def caption_set(root, n: int = 4, split: str = "test", size: int = 64):
    """A Karpathy JSON of ``n`` drawn squares (``root/images``), each with two references."""
    import json

    import imageio.v3 as iio

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, im in enumerate(squares(n, size)):
        iio.imwrite(images / f"{i}.png", im)
        c = COLOURS[i % 2]
        entries.append({"filename": f"{i}.png", "split": split, "cocoid": 100 + i,
                        "sentences": [{"raw": f"a {c} square"}, {"raw": f"a {c} box on grey"}]})  # fmt: skip
    ann = root / "captions.json"
    ann.write_text(json.dumps({"images": entries}))
    return ann, images


BLIP_WORDS = ("a", "red", "blue", "square", "box", "on", "grey", "photo", "of", "the")


def save_tiny_blip(path, seed: int = 0) -> str:
    """A randomly initialised one-layer BLIP captioner (``BlipForConditionalGeneration``, the
    class ``AutoModelForImageTextToText`` resolves for a BLIP config) with its processor, saved
    as a local folder for ``hf_model=<folder>``: a BERT tokenizer over a ten-word vocabulary
    written here, 32-pixel images, no download."""
    from pathlib import Path

    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(specials + BLIP_WORDS) + "\n")
    tokenizer = BertTokenizer(str(vocab), bos_token="[DEC]")
    ids = dict(zip(specials, range(len(specials)), strict=True))
    text = dict(vocab_size=len(specials) + len(BLIP_WORDS), hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
                max_position_embeddings=64, bos_token_id=ids["[DEC]"], eos_token_id=ids["[SEP]"],
                sep_token_id=ids["[SEP]"], pad_token_id=ids["[PAD]"])  # fmt: skip
    vision = dict(hidden_size=32, image_size=32, patch_size=16, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=64)  # fmt: skip
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=32)
    )
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)
