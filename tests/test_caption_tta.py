"""Captioning TTA: the loss, adaptation with a reward that is right, episodic resets."""

from __future__ import annotations

import torch
from _caption import right_reward, squares, tiny_captioner

from vlmrm.caption.captioner import masked_nll
from vlmrm.caption.metrics import clip_scores
from vlmrm.tta.captioning.adapt import CaptionTTA
from vlmrm.tta.core.feedback import CLIPFeedback
from vlmrm.tta.core.rlcf import sequence_reinforce_loss


def test_caption_loss_masks_padding_hand_computed():
    cap = tiny_captioner()
    prefix = cap.prefix(cap.embed_images(squares(1))).repeat(2, 1, 1)
    captions = [[11, 12, 13], [21]]  # the second is padded by two tokens
    nll = cap.caption_nll(prefix, captions)
    # By hand: the LM on prefix + tokens, log-softmax at the position before each target.
    for i, ids in enumerate(captions):
        target = ids + [cap.vocab.eos_id]
        emb = cap.lm.get_input_embeddings()(torch.tensor([target]))
        logits = cap.lm(inputs_embeds=torch.cat([prefix[i : i + 1], emb], 1)).logits[0]
        p = prefix.shape[1]
        logp = logits.log_softmax(-1)
        expected = -sum(logp[p - 1 + t, tok] for t, tok in enumerate(target)) / len(target)
        assert torch.allclose(nll[i], expected, atol=1e-5)
    # Counting the pads (the reference's way) gives another number for the short caption.
    tokens, mask = cap.targets(captions)
    with_pads = masked_nll(cap.token_logits(prefix, tokens), tokens, torch.ones_like(mask))
    assert not torch.allclose(with_pads[1], nll[1], atol=1e-4)
    assert torch.allclose(with_pads[0], nll[0], atol=1e-5)
    # The RLCF loss: mean over captions of advantage × nll.
    rewards = torch.tensor([[1.0, 0.0]])
    loss = sequence_reinforce_loss(nll.view(1, 2), rewards)
    assert torch.allclose(loss, (0.5 * nll[0] - 0.5 * nll[1]) / 2, atol=1e-6)


def test_tta_raises_clipscore_lm_frozen_mapper_reset():
    cap = tiny_captioner()
    reward = right_reward()
    tta = CaptionTTA(cap, CLIPFeedback(reward), lr=1e-3, steps=4, k=4, final_beams=2)
    lm_before = {k: v.clone() for k, v in cap.lm.state_dict().items()}
    images = squares(4)
    results = [tta.adapt(im, i) for i, im in enumerate(images)]
    assert all(torch.equal(v, lm_before[k]) for k, v in cap.lm.state_dict().items())
    # Episodic: after adapting to the other three images, the first one adapts exactly as it
    # did first (same seed), so nothing learned on one image leaks into the next.
    again = tta.adapt(images[0], 0)
    assert (again.caption, again.zeroshot_caption, again.rewards) == (
        results[0].caption, results[0].zeroshot_caption, results[0].rewards)  # fmt: skip
    # CLIPScore (the "A photo depicts" prompt, not the reward's own text) of the adapted
    # captions beats that of the zero-shot ones.
    emb = reward.embed_images(images)
    zs, _ = clip_scores(reward, emb, [r.zeroshot_caption for r in results])
    ad, _ = clip_scores(reward, emb, [r.caption for r in results])
    assert ad.mean() > zs.mean() + 0.05, (zs, ad)
    assert all(len(r.rewards) == 4 for r in results)
    # Rewards of the sampled captions rise over the steps too.
    assert sum(r.rewards[-1] for r in results) > sum(r.rewards[0] for r in results)


def test_batched_equals_sequential():
    cap = tiny_captioner()
    tta = CaptionTTA(cap, CLIPFeedback(right_reward()), lr=1e-3, steps=2, k=3, final_beams=2)
    images = list(squares(2))
    one = [tta.adapt(im, i) for i, im in enumerate(images)]
    both = tta.adapt_batch(images, [0, 1])
    assert [r.caption for r in one] == [r.caption for r in both]
    for a, b in zip(one, both, strict=True):
        assert a.rewards == torch.tensor(b.rewards).tolist() or torch.allclose(
            torch.tensor(a.rewards), torch.tensor(b.rewards), atol=1e-3
        )


def test_nucleus_sampling_is_seeded_and_ema_moves_the_start():
    cap = tiny_captioner()
    prefix = cap.prefix(cap.embed_images(squares(1)))
    a = cap.generate(prefix, 4, top_p=0.92, seed=3)[0]
    b = cap.generate(prefix, 4, top_p=0.92, seed=3)[0]
    c = cap.generate(prefix, 4, top_p=0.92, seed=4)[0]
    assert [x.ids for x in a] == [x.ids for x in b] != [x.ids for x in c]
    assert len(a) == 4
    tta = CaptionTTA(cap, CLIPFeedback(right_reward()), decoding="nucleus", lr=1e-3, steps=2, k=3,
                     final_beams=1, ema=True, ema_every=1, ema_momentum=0.5)  # fmt: skip
    start = {k: v.clone() for k, v in tta.state.start.items()}
    tta.adapt(squares(1)[0], 0)
    moved = [k for k in start if not torch.equal(start[k], tta.state.start[k])]
    assert moved  # the start is now half-way to the adapted weights
    assert all(torch.equal(v, tta.state.original[k]) for k, v in start.items())


def test_settings_are_checked():
    import pytest

    from vlmrm.errors import ConfigError

    cap = tiny_captioner()
    for bad, match in [({"k": 1}, "k must be"), ({"decoding": "greedy"}, "decoding"),
                       ({"top_p": 0}, "top_p"), ({"final_beams": 0}, "final_beams"), ({"stepz": 2}, "unknown")]:  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            CaptionTTA(cap, CLIPFeedback(right_reward()), **bad)
