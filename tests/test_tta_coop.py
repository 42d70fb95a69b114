"""Fine-grained sets in CoOp split files (and their 5-step AugMix preset), and prompt mode
starting from a saved CoOp prompt learner (``ctx_init=<file>``)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from _tta import TINY

import vlmrm
from vlmrm.cli.args import parse_settings
from vlmrm.datasets.coop import load_coop_split
from vlmrm.errors import ConfigError
from vlmrm.tta.classification.prompt import PromptLearner
from vlmrm.tta.cli import main
from vlmrm.tta.settings import TTASettings


def coop_split(root: Path) -> Path:
    """A tiny ``split_zhou_OxfordPets.json`` with images under ``root/images``."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = {"train": [], "val": [], "test": []}
    for label, name in enumerate(["abyssinian", "great_pyrenees", "pug"]):
        for i, part in enumerate(["train", "test", "test"]):
            f = f"{name}_{i}.jpg"
            iio.imwrite(root / "images" / f, rng.integers(0, 255, (28, 36, 3), dtype=np.uint8))
            rows[part].append([f, label, name])
    path = root / "split_zhou_OxfordPets.json"
    path.write_text(json.dumps(rows))
    return path


def test_coop_split_file_reads_the_test_list_with_its_class_names(tmp_path: Path) -> None:
    path = coop_split(tmp_path)
    data = load_coop_split(path)  # images found under the dataset's own folder name
    assert data.root == tmp_path / "images" and len(data) == 6
    assert data.classnames == ["abyssinian", "great pyrenees", "pug"]
    assert data.samples[0] == ("abyssinian_1.jpg", 0) and data.samples[-1] == ("pug_2.jpg", 2)
    assert len(load_coop_split(path, split="train")) == 3
    with pytest.raises(ConfigError, match="images="):
        load_coop_split(path, images=tmp_path)


def test_coop_split_gets_the_finegrained_preset_and_runs(tmp_path: Path) -> None:
    path = coop_split(tmp_path)
    cfg = parse_settings(TTASettings, ["task=classify", f"data={path}"])
    s = cfg.method_settings()
    assert (s.steps, s.augmix) == (5, True)
    s2 = parse_settings(TTASettings, ["task=classify", f"data={path}", "steps=2", "augmix=false"]).method_settings()
    assert (s2.steps, s2.augmix) == (2, False)
    folder = tmp_path / "folders"
    folder.mkdir()
    assert parse_settings(TTASettings, ["task=classify", f"data={folder}"]).method_settings().augmix is False
    out = tmp_path / "out"
    assert main(["task=classify", f"data={path}", f"out={out}", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["settings"]["augmix"] is True


def test_ctx_init_from_a_saved_coop_prompt_learner(tmp_path: Path) -> None:
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
    width = clip.model.token_embedding.weight.shape[1]
    ctx = torch.randn(6, width, generator=torch.Generator().manual_seed(1))
    saved = tmp_path / "model.pth.tar-50"
    torch.save({"state_dict": {"ctx": ctx, "token_prefix": torch.zeros(1)}, "epoch": 50}, saved)
    learner = PromptLearner(clip, ["cat", "dog"], ctx_init=str(saved))
    assert learner.n_ctx == 6 and torch.equal(learner.init_ctx, ctx)
    # the class embeddings are those of the learned context
    emb = learner(learner.init_ctx)
    assert emb.shape == (2, clip.embed_dim) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(emb, PromptLearner(clip, ["cat", "dog"])(PromptLearner(clip, ["cat", "dog"]).init_ctx))
    torch.save({"state_dict": {"ctx": torch.zeros(2, 4, width)}}, tmp_path / "csc.pth")
    with pytest.raises(ConfigError, match="class-specific"):
        PromptLearner(clip, ["cat", "dog"], ctx_init=str(tmp_path / "csc.pth"))
    torch.save({"ctx": torch.zeros(4, width + 1)}, tmp_path / "wide.pth")
    with pytest.raises(ConfigError, match="another CLIP"):
        PromptLearner(clip, ["cat", "dog"], ctx_init=str(tmp_path / "wide.pth"))


def _readme_coop_commands() -> list[tuple[str, list[str]]]:
    """The manual's commands on the CoOp datasets: (dataset folder under /data, tokens)."""
    from _coop import TREES
    from test_readme import doc_blocks, shell_commands

    found = []
    for block in (b for b in doc_blocks() if b.lang == "bash"):
        for tokens in shell_commands(block.text):
            data = next((t.removeprefix("data=/data/") for t in tokens if t.startswith("data=/data/")), "")
            if tokens[:3] == ["python", "-m", "vlmrm.tta"] and data.split("/")[0] in TREES:
                found.append((data.split("/")[0], tokens))
    return found


COOP_COMMANDS = _readme_coop_commands()


def test_every_coop_dataset_has_a_readme_command() -> None:
    from _coop import TREES

    assert sorted({folder for folder, _ in COOP_COMMANDS}) == sorted(TREES)


@pytest.mark.parametrize(
    "folder,tokens", COOP_COMMANDS,
    ids=[f"{f}-{i}" for i, (f, _) in enumerate(COOP_COMMANDS)],
)  # fmt: skip
def test_readme_coop_command_runs_on_the_datasets_own_layout(folder, tokens, tmp_path, monkeypatch) -> None:
    """The manual's command (docs/tta.md), as written, on a tiny tree in the layout the
    dataset's archive unpacks to (with CoOp's split file): every test image is adapted, with
    its label and class name; only the models and step counts are made tiny, as the docs walk
    does."""
    from _coop import TREES

    from vlmrm.cli import main as vlmrm_main

    data = tmp_path / "data"
    test = TREES[folder](data)
    if any("/data/coop/" in t for t in tokens):  # a saved CoOp prompt learner for ctx_init=
        clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
        width = clip.model.token_embedding.weight.shape[1]
        learner = data / "coop" / "dtd" / "prompt_learner" / "model.pth.tar-50"
        learner.parent.mkdir(parents=True)
        torch.save({"state_dict": {"ctx": torch.zeros(4, width)}, "epoch": 50}, learner)
    args = [t.replace("=/data/", f"={data}/") for t in tokens[3:]]
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert vlmrm_main(["tta", *args, *TINY, "views=4", "steps=1", "k=2", f"out={out}"]) == 0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["key"], r["label"], r["class"]) for r in recs) == sorted(test)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len(test)
    assert metrics["settings"]["augmix"] is (folder != "imagenet")  # the fine-grained preset


def test_aircraft_lists_with_an_unknown_variant_are_one_line(tmp_path: Path) -> None:
    from _coop import fgvc_aircraft

    from vlmrm.datasets.coop import load_coop_dataset

    fgvc_aircraft(tmp_path)
    data = load_coop_dataset(tmp_path / "fgvc-aircraft-2013b", split="val")  # the archive folder too
    assert data.classnames == ["707-320", "BAE 146-200", "F/A-18"] and data.samples == [("1102429.jpg", 2)]
    listing = tmp_path / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt"
    listing.write_text("1514522 747-400\n")
    with pytest.raises(ConfigError, match=r"images_variant_test.txt:1: variant '747-400' is not in variants.txt"):
        load_coop_dataset(listing.parent)
