"""RLCF adapters: episodic reset, batched == sequential, the update direction, retrieval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmrm.errors import ConfigError
from vlmrm.tta import (
    ClassificationTTA,
    CLIPFeedback,
    RetrievalTTA,
    best_rank,
    build_gallery,
    recall_at,
)

CLASSES = ["cat", "dog", "car", "tree", "house"]
FAST = dict(views=8, select=0.25, steps=2)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, size=(40 + 9 * i, 56, 3), dtype=np.uint8) for i in range(3)]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(model: torch.nn.Module, snap: dict[str, torch.Tensor]) -> None:
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap[k]), k


@pytest.mark.parametrize("mode, lr", [("prompt", 0.05), ("image", 1e-3)])
def test_weights_reset_between_samples(tiny_clip, images, mode, lr):
    tta = ClassificationTTA(tiny_clip, CLIPFeedback(tiny_clip), CLASSES, mode=mode, lr=lr, **FAST)
    snap = _snapshot(tiny_clip.model)
    start = {k: v.clone() for k, v in tta.state.start.items()}
    first = tta.adapt(images[0], seed=0)
    assert not torch.allclose(first.logits, first.zeroshot_logits)  # it did adapt
    for i, img in enumerate(images):
        tta.adapt(img, seed=i)
        _assert_same(tiny_clip.model, snap)  # the loaded policy is never modified
        for k, v in tta.state.start.items():
            assert torch.equal(v, start[k])  # each sample starts from the original weights
    again = tta.adapt(images[0], seed=0)
    torch.testing.assert_close(again.logits, first.logits)  # no carry-over between samples
    torch.testing.assert_close(first.zeroshot_logits, tta.zero_shot(images[0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "mode, lr, sampling, advantage",
    [
        ("prompt", 0.05, "topk", "mean"),
        ("image", 1e-3, "topk", "mean"),
        ("prompt", 0.05, "sample", "std"),
    ],
)
def test_batched_equals_sequential(tiny_clip, images, mode, lr, sampling, advantage):
    tta = ClassificationTTA(
        tiny_clip,
        CLIPFeedback(tiny_clip),
        CLASSES,
        mode=mode,
        lr=lr,
        sampling=sampling,
        advantage=advantage,
        **FAST,
    )
    seeds = [11, 12, 13]
    seq = [tta.adapt(img, seed=s) for img, s in zip(images, seeds, strict=True)]
    bat = tta.adapt_batch(images, seeds)
    for a, b in zip(seq, bat, strict=True):
        assert a.selected == b.selected
        torch.testing.assert_close(a.zeroshot_logits, b.zeroshot_logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.logits, b.logits, atol=1e-4, rtol=0)
        assert a.rewards == pytest.approx(b.rewards, abs=1e-5)


class _FavourOne(CLIPFeedback):
    """A reward model that only likes one class: reward 1 for it, 0 otherwise."""

    def __init__(self, clip, favourite: int, n_classes: int):
        super().__init__(clip)
        self.favourite, self.n_classes = favourite, n_classes

    def rewards(self, a, b):
        table = torch.zeros(*a[0].shape[:-1], self.n_classes)
        table[..., self.favourite] = 1.0
        return table


@pytest.mark.parametrize("mode, lr", [("prompt", 0.05), ("image", 1e-3)])
def test_adaptation_moves_towards_the_rewarded_class(tiny_clip, images, mode, lr):
    names = CLASSES[:3]
    zs = ClassificationTTA(
        tiny_clip, CLIPFeedback(tiny_clip), names, mode=mode, steps=0, views=8, select=0.25
    )
    base = zs.adapt(images[0], seed=0).zeroshot_logits
    target = int(base.argmin())  # the least likely class
    tta = ClassificationTTA(
        tiny_clip,
        _FavourOne(tiny_clip, target, 3),
        names,
        mode=mode,
        lr=lr,
        k=3,
        steps=3,
        views=8,
        select=0.25,
    )
    res = tta.adapt(images[0], seed=0)
    p0 = res.zeroshot_logits.softmax(-1)[target]
    p1 = res.logits.softmax(-1)[target]
    assert p1 > p0 + 1e-3
    assert res.rewards[0] == pytest.approx(1 / 3)  # K = C = 3: one of three samples rewarded


def test_ema_moves_the_start_state(tiny_clip, images):
    tta = ClassificationTTA(
        tiny_clip, CLIPFeedback(tiny_clip), CLASSES, mode="prompt", lr=0.05, ema=True,
        ema_momentum=0.5, ema_every=1, **FAST,
    )  # fmt: skip
    tta.adapt(images[0], seed=0)
    assert not torch.equal(tta.state.start["ctx"], tta.state.original["ctx"])
    tta.state.reset()
    assert torch.equal(tta.state.start["ctx"], tta.state.original["ctx"])


def test_bad_settings_are_one_line_errors(tiny_clip):
    fb = CLIPFeedback(tiny_clip)
    with pytest.raises(ConfigError, match="mode"):
        ClassificationTTA(tiny_clip, fb, CLASSES, mode="text")
    with pytest.raises(ConfigError, match="k="):
        ClassificationTTA(tiny_clip, fb, CLASSES[:2], k=3)
    with pytest.raises(ConfigError, match="unknown classification setting"):
        ClassificationTTA(tiny_clip, fb, CLASSES, stepz=3)
    with pytest.raises(ConfigError, match="select"):
        ClassificationTTA(tiny_clip, fb, CLASSES, select=0)


@pytest.fixture(scope="module")
def shapes():
    """Three drawn images (a red square, a blue bar, a green cross), two captions each."""
    from _captions import draw

    drawn = [("red", "square", "left"), ("blue", "bar", "right"), ("green", "cross", "top")]
    images = [draw(c, s, p, size=48) for c, s, p in drawn]
    captions = [x for c, s, p in drawn for x in (f"a {c} {s} on the {p}", f"the {s} is {c}")]
    return images, captions


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_retrieval_adapts_and_resets(tiny_clip, shapes, direction):
    images, captions = shapes
    img2txt = [[0, 1], [2, 3], [4, 5]]
    fb = CLIPFeedback(tiny_clip)
    gallery = build_gallery(tiny_clip, fb, images, captions)
    assert gallery.policy_image.shape == (3, 64) and gallery.policy_text.shape == (6, 64)
    lr = 1e-3 if direction == "i2t" else 1e-2
    tta = RetrievalTTA(tiny_clip, fb, gallery, direction=direction, k=3, steps=3, lr=lr)
    snap = _snapshot(tiny_clip.model)
    img, txt = tiny_clip.embed_images(np.stack(images)), tiny_clip.embed_texts(captions)
    cos = (img @ txt.T).double()  # (images, captions)
    if direction == "i2t":
        adapt = lambda q: tta.adapt_image(images[q], q)  # noqa: E731
        targets, reward = img2txt, 2.5 * cos.clamp_min(0)
        zs = tta.logit_scale * gallery.policy_image @ gallery.policy_text.T
    else:
        adapt = lambda q: tta.adapt_text(captions[q], q)  # noqa: E731
        targets, reward = [[j // 2] for j in range(6)], 2.5 * cos.T.clamp_min(0)
        zs = None
    results = {q: adapt(q) for q in range(len(targets))}
    _assert_same(tiny_clip.model, snap)
    preferred = 0
    for q, res in results.items():
        if zs is not None:  # zero-shot scores are the frozen gallery similarity
            torch.testing.assert_close(res.zeroshot_scores, zs[q], atol=1e-4, rtol=0)
        # RLCF moved the scores of the k candidates it sampled (the zero-shot top 3) towards
        # the reward CLIP's preference: the best-rewarded one gained on the worst-rewarded one
        top = res.zeroshot_scores.topk(3).indices
        best, worst = top[reward[q, top].argmax()], top[reward[q, top].argmin()]
        gain = (res.scores - res.zeroshot_scores).double()
        if reward[q, best] > reward[q, worst] + 1e-3:  # (all three may score 0: no preference)
            assert gain[best] > gain[worst], (q, gain[top], reward[q, top])
            preferred += 1
    assert preferred >= 2
    # Episodic: query 0 adapted again, after the others, adapts exactly as it did first.
    torch.testing.assert_close(adapt(0).scores, results[0].scores, atol=0, rtol=0)
    # Recall from the adapted scores, against ranks counted here by sorting
    got = recall_at([best_rank(results[q].scores, targets[q]) for q in results])
    order = {q: results[q].scores.argsort(descending=True).tolist() for q in results}
    for k in (1, 5, 10):
        hits = [any(t in order[q][:k] for t in targets[q]) for q in results]
        assert got[f"R@{k}"] == pytest.approx(100.0 * np.mean(hits)), (k, got, order)


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_retrieval_batched_equals_one_query_at_a_time(tiny_clip, images, direction):
    captions = [f"a picture of thing {i}" for i in range(6)]
    fb = CLIPFeedback(tiny_clip)
    gallery = build_gallery(tiny_clip, fb, images, captions)
    lr = 1e-3 if direction == "i2t" else 1e-2
    tta = RetrievalTTA(tiny_clip, fb, gallery, direction=direction, k=3, steps=3, lr=lr)
    if direction == "i2t":
        one = [tta.adapt_image(images[i], i) for i in (0, 2)]
        both = tta.adapt_images([images[0], images[2]], [0, 2])
    else:
        one = [tta.adapt_text(captions[i], i) for i in (1, 4)]
        both = tta.adapt_texts([captions[1], captions[4]], [1, 4])
    for a, b in zip(one, both, strict=True):
        torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.zeroshot_scores, b.zeroshot_scores, atol=1e-5, rtol=1e-5)
        assert a.rewards == pytest.approx(b.rewards, abs=1e-5)
        assert not torch.allclose(b.scores, b.zeroshot_scores)


def test_rank_and_recall():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7])
    assert best_rank(scores, [2]) == 2
    assert best_rank(scores, [0, 3]) == 1  # a hit if any ground truth ranks
    assert recall_at([0, 4, 9, 12]) == {"R@1": 25.0, "R@5": 50.0, "R@10": 75.0}


@pytest.mark.parametrize("mode, lr", [("prompt", 0.05), ("image", 1e-3)])
def test_mixed_precision_follows_the_policy(tiny_clip, images, mode, lr):
    """A policy loaded with precision="amp" adapts under autocast (bf16 on the CPU), fp32 weights."""
    import vlmrm

    amp = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="amp")
    tta = ClassificationTTA(amp, CLIPFeedback(tiny_clip), CLASSES, mode=mode, lr=lr, **FAST)
    assert tta.amp_dtype == torch.bfloat16 and tta._scaler is None
    assert all(v.dtype == torch.float32 for v in tta.state.start.values())
    res = tta.adapt(images[0], seed=0)
    assert torch.isfinite(res.logits).all() and res.logits.dtype == torch.float32
    ref = ClassificationTTA(tiny_clip, CLIPFeedback(tiny_clip), CLASSES, mode=mode, lr=lr, **FAST)
    assert ref.amp_dtype is None
    # bf16 rounds, but the zero-shot answer on the centre crop is the fp32 one's
    fp32 = ref.adapt(images[0], seed=0).zeroshot_logits
    torch.testing.assert_close(res.zeroshot_logits, fp32, atol=0.5, rtol=0.05)


def test_text_to_image_adapts_only_text_weights_and_the_logit_scale(tiny_clip, images):
    fb = CLIPFeedback(tiny_clip)
    gallery = build_gallery(tiny_clip, fb, images, ["a cat", "a dog", "a car"])
    tta = RetrievalTTA(tiny_clip, fb, gallery, direction="t2i", k=2, steps=1, lr=1e-2)
    names = set(tta.state.start)
    assert "token_embedding.weight" in names and "positional_embedding" in names
    assert not any(n.startswith(("visual", "logit_bias")) for n in names)
    assert "logit_scale" in names  # the reference tunes it in text→image
    res = tta.adapt_text("a cat", 0)
    assert res.scores.shape == (3,)
    norm = RetrievalTTA(tiny_clip, fb, gallery, direction="i2t", k=2, steps=1, params="norm")
    assert norm.state.start and all(n.startswith("visual.") for n in norm.state.start)
