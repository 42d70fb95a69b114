"""Seconds per test input of RLCF test-time adaptation: one input at a time vs batched.

For classification (:class:`~vlmrm.tta.ClassificationTTA`, image or prompt mode),
image→text retrieval (:class:`~vlmrm.tta.RetrievalTTA`) and captioning
(:class:`~vlmrm.tta.CaptionTTA`), the same ``B`` test inputs are adapted one at a time
(``adapt``) and all at once with independent weights (``adapt_batch`` /
``adapt_images``, i.e. ``batch_size=B`` on the command line). The two modes are
interleaved and the best of ``--repeats`` is kept, so the printed ratio is measured in one
run on the same machine. The method's reference settings are used (classification: 64
views, 3 steps, K=3; retrieval: 8 steps, K=16; captioning: 4 steps, 10 beams, final
5-beam search).

Weights are random (no download): CLIPs by architecture name (``ViT-B-16``, or
``vlmrm-tiny``), the captioner's LM from a ``transformers`` config (``--lm opt-125m``: the
reference OPT-125m's shape; ``--lm tiny``: 2 layers, width 64) with the reference mapper
(40 prefix tokens, 8 layers) or a small one for ``tiny``. Latency does not depend on the
weights' values, only beam search's caption lengths do (``--max-tokens`` bounds them).

    python benchmarks/tta_latency.py                                   # CPU smoke: tiny models
    python benchmarks/tta_latency.py --model ViT-B-16 --reward-model ViT-L-14 --lm opt-125m \\
        --batch-size 4,16 --device cuda --precision amp                # the reference setting
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import vlmrm
from vlmrm.caption.captioner import ClipCaptioner, mapper_for
from vlmrm.caption.lm import CaptionVocab, freeze
from vlmrm.tta import CaptionTTA, ClassificationTTA, CLIPFeedback, Gallery, RetrievalTTA

CLASSES = [f"class {i}" for i in range(200)]  # ImageNet-A/R have 200 classes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def tiny_or_reference_lm(kind: str, eos: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    if kind == "opt-125m":
        return freeze(OPTForCausalLM(OPTConfig(eos_token_id=eos, bos_token_id=eos, pad_token_id=eos)))
    config = GPT2Config(vocab_size=49408, n_layer=2, n_embd=64, n_head=2, bos_token_id=eos, eos_token_id=eos)
    return freeze(GPT2LMHeadModel(config))


def make_captioner(policy: vlmrm.ClipModel, kind: str, max_tokens: int) -> ClipCaptioner:
    import open_clip

    vocab = CaptionVocab.from_tokenizer(open_clip.get_tokenizer("ViT-B-32"))
    lm = tiny_or_reference_lm(kind, vocab.eos_id)
    shape = {} if kind == "opt-125m" else {"prefix_length": 4, "layers": 2, "heads": 2}
    torch.manual_seed(1)
    return ClipCaptioner(policy, lm, vocab, mapper_for(policy, lm, **shape), max_tokens)


def random_gallery(policy: vlmrm.ClipModel, feedback: CLIPFeedback, images: int, captions: int) -> Gallery:
    """Unit embeddings of a gallery the size of Flickr30k's test split (1k images, 5k captions)."""
    g = torch.Generator().manual_seed(0)

    def unit(n: int, d: int) -> torch.Tensor:
        x = torch.randn(n, d, generator=g)
        return (x / x.norm(dim=-1, keepdim=True)).to(policy.device)

    dims = [m.embed_dim for m in feedback.models]
    return Gallery(
        unit(images, policy.embed_dim),
        unit(captions, policy.embed_dim),
        [unit(images, d) for d in dims],
        [unit(captions, d) for d in dims],
    )


def tasks(args, policy, feedback):
    """``name → (sequential(images), batched(images))`` of every task measured."""
    out = {}
    for mode in args.classify_modes.split(","):
        tta = ClassificationTTA(policy, feedback, CLASSES, mode=mode)
        out[f"classify ({mode})"] = (
            lambda ims, t=tta: [t.adapt(im, i) for i, im in enumerate(ims)],
            lambda ims, t=tta: t.adapt_batch(ims, list(range(len(ims)))),
        )
    rtta = RetrievalTTA(policy, feedback, random_gallery(policy, feedback, 1000, 5000), direction="i2t")
    out["retrieve (i2t)"] = (
        lambda ims: [rtta.adapt_image(im, i) for i, im in enumerate(ims)],
        lambda ims: rtta.adapt_images(ims, list(range(len(ims)))),
    )
    ctta = CaptionTTA(make_captioner(policy, args.lm, args.max_tokens), feedback)
    out["caption"] = (
        lambda ims: [ctta.adapt(im, i) for i, im in enumerate(ims)],
        lambda ims: ctta.adapt_batch(ims, list(range(len(ims)))),
    )
    return out


def measure(fn, images, device, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn(images)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best / len(images)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vlmrm-tiny", help="policy CLIP (random weights by architecture)")
    p.add_argument("--reward-model", default="vlmrm-tiny", help="reward CLIP")
    p.add_argument("--lm", default="tiny", choices=("tiny", "opt-125m"), help="the captioner's LM shape")
    p.add_argument("--batch-size", default="4", help="comma-separated B values")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", help="fp32 | amp (the policy's training precision)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=20)
    p.add_argument("--classify-modes", default="image,prompt")
    p.add_argument("--tasks", default="", help="only these tasks (comma-separated name prefixes)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    policy = vlmrm.load_clip(args.model, device=device, precision=args.precision, resize_mode="center_crop")
    reward = vlmrm.load_clip(args.reward_model, device=device, resize_mode="center_crop")
    feedback = CLIPFeedback(reward)
    rng = np.random.default_rng(0)
    chosen = [t for t in args.tasks.split(",") if t]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; policy {args.model} ({args.precision}), reward {args.reward_model}, LM {args.lm}")
    print(f"{'task':<20} {'B':>4} {'s/input one-by-one':>19} {'s/input batched':>16} {'speed-up':>9}")
    for task, (seq, bat) in tasks(args, policy, feedback).items():
        if chosen and not any(task.startswith(c) for c in chosen):
            continue
        for b in [int(x) for x in args.batch_size.split(",")]:
            images = list(rng.integers(0, 255, size=(b, 256, 256, 3), dtype=np.uint8))
            bat(images[:1])  # warm-up (kernels, caches)
            s_seq = s_bat = float("inf")
            for _ in range(args.repeats):  # interleaved: both see the same machine state
                s_seq = min(s_seq, measure(seq, images, device, 1))
                s_bat = min(s_bat, measure(bat, images, device, 1))
            print(f"{task:<20} {b:>4} {s_seq:>19.3f} {s_bat:>16.3f} {s_seq / s_bat:>8.2f}×", flush=True)


if __name__ == "__main__":
    main()
