"""CLIP fine-tuning on image–caption data: readers, the seeded split by image, retrieval
metrics, supervised and RL stages on drawn shapes with ``vlmrm-tiny``, WiSE-FT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _captions import shapes_dataset

import vlmrm
from vlmrm.errors import ConfigError
from vlmrm.tune.data.captions import load_caption_data, split_by_image
from vlmrm.tune.eval.retrieval import matching_accuracy, recall_at_k
from vlmrm.tune.finetune.run import finetune, wise_interpolate


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return shapes_dataset(tmp_path_factory.mktemp("shapes"))


def test_coco_karpathy_and_jsonl_read_the_same_images_and_captions(tmp_path: Path) -> None:
    sets = [
        {d.image: d.captions for d in load_caption_data(shapes_dataset(tmp_path / fmt, fmt))}
        for fmt in ("karpathy", "coco", "jsonl")
    ]
    names = [{Path(k).name: v for k, v in s.items()} for s in sets]
    assert len(names[0]) == 60 and names[0] == names[1] == names[2]
    assert names[0]["red-bar-left.png"] == ("a red bar on the left", "the bar is red, at the left")


def test_split_is_by_image_seeded_and_stable_under_reruns_and_row_order(shapes: Path) -> None:
    data = load_caption_data(shapes)
    a, b = split_by_image(data, seed=3), split_by_image(list(reversed(data)), seed=3)
    assert {k: [d.image for d in v] for k, v in a.items()} == {k: [d.image for d in v] for k, v in b.items()}
    assert [len(a[k]) for k in ("train", "val", "test")] == [48, 6, 6]
    parts = [{d.image for d in a[k]} for k in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == {d.image for d in data}
    assert {d.image for d in split_by_image(data, seed=4)["test"]} != parts[2]


def test_bad_caption_data_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"foo": 1}))
    with pytest.raises(ConfigError, match="neither COCO"):
        load_caption_data(tmp_path / "x.json")
    (tmp_path / "y.jsonl").write_text(json.dumps({"image": "a.png", "caption": "c"}) + "\n")
    with pytest.raises(ConfigError, match="a split needs at least 3"):
        load_caption_data(tmp_path / "y.jsonl")
    r = subprocess.run([sys.executable, "-m", "vlmrm.tune.finetune", f"data={tmp_path / 'x.json'}"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "neither COCO" in r.stderr


def test_recall_and_matching_accuracy_against_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    owner = [0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 6]
    txt = torch.nn.functional.normalize(img[owner] + 0.9 * torch.randn(len(owner), 5, generator=g), dim=-1)
    got = recall_at_k(img, txt, owner, ks=(1, 2, 5))
    sim = (img @ txt.T).numpy()
    for k in (1, 2, 5):
        i2t = np.mean([any(owner[j] == i for j in np.argsort(-sim[i])[:k]) for i in range(7)])
        t2i = np.mean([owner[j] in np.argsort(-sim[:, j])[:k] for j in range(len(owner))])
        assert got[f"i2t_R@{k}"] == pytest.approx(i2t) and got[f"t2i_R@{k}"] == pytest.approx(t2i)
    first = txt[[0, 2, 3, 4, 6, 7, 8]]
    acc = matching_accuracy(img, first, batch=3)
    s = (img @ first.T).numpy()
    hits = sum(int(np.argmax(s[b:b + 3, b:b + 3][i]) == i) for b in (0, 3, 6) for i in range(len(s[b:b + 3])))
    assert acc["i2t_accuracy"] == pytest.approx(hits / 7)


def test_supervised_finetuning_raises_heldout_recall_and_the_checkpoint_loads(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    doc = finetune(data=str(shapes), model="vlmrm-tiny", out=str(out), device="cpu", epochs=6, lr=1e-4,
                   batch_size=16, progress=False, wise_alpha=0.5)  # fmt: skip
    zs, tuned = doc["zero_shot"], doc["tuned"]
    assert tuned["mean_R@1"] >= zs["mean_R@1"] + 0.2, (zs, tuned)
    assert len(doc["history"]) == 6 and all("val/mean_R@1" in h for h in doc["history"])
    assert json.loads((out / "metrics.json").read_text())["tuned"] == tuned
    # the split is saved, and a rerun in the same folder reads it back
    split = json.loads((out / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (48, 6, 6)
    # the best checkpoint drops into load_clip and gives the tuned numbers
    from vlmrm.tune.data.captions import load_split
    from vlmrm.tune.eval.retrieval import retrieval_metrics

    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=str(out / "model.safetensors"), fast_resize=False)
    test = load_split(out / "split.json", load_caption_data(shapes))["test"]
    assert retrieval_metrics(clip, test, 16)["mean_R@1"] == pytest.approx(tuned["mean_R@1"])
    # WiSE-FT: the halfway weights, scored on test too
    from safetensors.torch import load_file

    base = vlmrm.load_clip("vlmrm-tiny", device="cpu").model.state_dict()
    tuned_w, wise_w = load_file(out / "model.safetensors"), load_file(out / "model_wise.safetensors")
    k = "visual.proj"
    torch.testing.assert_close(wise_w[k], 0.5 * base[k] + 0.5 * tuned_w[k])
    assert doc["wise"]["alpha"] == 0.5 and 0.0 <= doc["wise"]["mean_R@1"] <= 1.0


def test_wise_interpolation_keeps_integer_buffers() -> None:
    a = {"w": torch.zeros(2), "n": torch.tensor([1])}
    b = {"w": torch.ones(2), "n": torch.tensor([5])}
    out = wise_interpolate(a, b, 0.25)
    assert out["w"].tolist() == [0.25, 0.25] and out["n"].tolist() == [5]


def _match_confidence(state: dict[str, torch.Tensor], pairs: list[tuple[str, str]]) -> float:
    """Mean softmax probability (temperature ``exp(logit_scale)``) of each image's own
    caption among ``pairs``' captions and of each caption's own image, under the weights
    ``state``: encoded here with ``load_clip``'s own encoders, not the trainer's."""
    from vlmrm.runtime.images import load_image

    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", fast_resize=False)
    clip.model.load_state_dict(state)
    cos = clip.embed_images(np.stack([load_image(p) for p, _ in pairs])) @ clip.embed_texts([t for _, t in pairs]).T
    logits = float(clip.model.logit_scale.detach().exp()) * cos
    eye = torch.eye(len(pairs), dtype=torch.bool)
    return float(0.5 * (logits.softmax(1)[eye].mean() + logits.softmax(0)[eye].mean()))


def test_rl_stage_rewards_confident_correct_matches_and_moves_the_weights(shapes: Path, tmp_path: Path) -> None:
    """The RL stage's updates raise the confidence of the right matches (the reward is
    correctness × confidence): within the first step's batch after that step, and over all
    training pairs after the epoch; measured independently of the trainer."""
    from vlmrm.tune.finetune.run import Finetuner
    from vlmrm.tune.finetune.settings import FinetuneSettings

    cfg = FinetuneSettings(data=str(shapes), model="vlmrm-tiny", out=str(tmp_path / "rl"), device="cpu",
                           stage="rl", rl_epochs=1, rl_lr=1e-4, batch_size=4, num_samples=4, progress=False)  # fmt: skip
    weights: dict[int, dict[str, torch.Tensor]] = {}

    def keep(step: int, row: dict) -> None:
        weights[step] = {k: v.detach().clone() for k, v in run.clip.model.state_dict().items()}

    run = Finetuner(cfg, keep)
    weights[0] = {k: v.detach().clone() for k, v in run.clip.model.state_dict().items()}
    batches = run._epoch_batches(0)  # the RL epoch's batches, in the trainer's seeded order
    doc = run.run()
    assert [h["stage"] for h in doc["history"]] == ["rl"] and len(weights) == len(batches) + 1
    moved = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert "visual.proj" in moved and "text_projection" in moved, moved
    first = _match_confidence(weights[0], batches[0]), _match_confidence(weights[1], batches[0])
    assert first[1] > 1.008 * first[0], first  # chance is 1/4: the tiny model starts near it
    everything = [p for b in batches for p in b]
    epoch = _match_confidence(weights[0], everything), _match_confidence(weights[len(batches)], everything)
    assert epoch[1] > 1.03 * epoch[0], epoch  # (a reward of the wrong sign lowers both)


def test_local_hugging_face_datasets_are_read_without_downloads(shapes: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rows = load_caption_data(shapes)[:5]
    ds = datasets.Dataset.from_dict({
        "image": [Image.open(d.image) for d in rows],
        "caption": [list(d.captions) for d in rows],
    }).cast_column("image", datasets.Image())  # fmt: skip
    ds.save_to_disk(tmp_path / "saved")
    ds.to_parquet(tmp_path / "data.parquet")
    for source in (tmp_path / "saved", tmp_path / "data.parquet"):
        got = load_caption_data(source, text_column="caption", cache=tmp_path / f"cache-{source.name}")
        assert [d.captions for d in got] == [d.captions for d in rows]
        first = np.asarray(Image.open(got[0].image).convert("RGB"))
        assert np.array_equal(first, np.asarray(Image.open(rows[0].image).convert("RGB")))
    with pytest.raises(ConfigError, match="text_column="):
        load_caption_data(tmp_path / "saved", text_column="text", cache=tmp_path / "c3")


def test_rl_reward_is_correctness_times_confidence() -> None:
    from vlmrm.tune.objectives import losses as L

    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 0.5, 3.0], [0.0, 1.0, 0.0]])
    probs = logits.softmax(-1)
    ranks = 1.0 - torch.eye(3)  # in-batch candidates: the matching caption is the right one
    r = L.candidate_rewards(ranks, "confidence", probs)
    expected = torch.where(torch.eye(3, dtype=torch.bool), probs, -probs)
    torch.testing.assert_close(r, expected)
    # the policy gradient raises the right caption's logit when it is sampled
    lg = logits.clone().requires_grad_(True)
    out = L.reinforce_loss(lg, r, samples=torch.tensor([[0, 1], [2, 1], [2, 0]]))
    out.loss.backward()
    assert lg.grad[0, 0] < 0 and lg.grad[1, 1] < 0 and lg.grad[2, 2] < 0  # descent raises the right answers
