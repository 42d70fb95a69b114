"""One thread policy for every entry point (``vlmrm.runtime.threads``): ``load_clip``, the
Python API and every command apply it, and each command prints it once."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import torch

import vlmrm
from vlmrm.errors import ConfigError
from vlmrm.runtime import threads as policy


def test_ranks_on_one_host_share_the_cores(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert policy.resolve_threads("auto", cores=16) == 4  # 8 cores per rank, half of them
    assert policy.resolve_threads("auto", cores=4) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert policy.resolve_threads("auto", cores=16) == 2
    assert policy.resolve_threads(3, cores=16) == 3  # an integer overrides
    assert "4 ranks" in policy.describe_threads("auto")


@pytest.mark.parametrize("bad", [0, -2, "many", 1.5, True])
def test_a_bad_value_is_one_error(bad) -> None:
    with pytest.raises(ConfigError, match="threads must be 'auto' or a positive integer"):
        policy.resolve_threads(bad)


def test_the_trainer_uses_the_same_helper() -> None:
    from vlmrm.agents import config

    for cores, workers in ((2, 0), (8, 6), (64, 0), (16, 14)):
        assert config.torch_threads("auto", workers, cores=cores) == policy.resolve_threads(
            "auto", workers, cores=cores
        )
    assert config.available_cores is policy.available_cores


def test_load_clip_runs_its_towers_at_the_policy_and_leaves_the_process_alone() -> None:
    before = torch.get_num_threads()
    seen = []
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", threads=1)
    assert clip.threads == 1
    encode = clip.model.encode_image

    def spy(x, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return encode(x, *args, **kwargs)

    clip.model.encode_image = spy
    clip.embed_images(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert seen == [1]
    assert torch.get_num_threads() == before  # restored after the call
    auto = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    assert auto.threads == policy.resolve_threads("auto")


def test_a_command_applies_the_policy_once_and_prints_it(monkeypatch, capsys) -> None:
    from vlmrm.cli.args import apply_command_threads
    from vlmrm.scoring.settings import ScoreSettings

    monkeypatch.setattr(policy, "_process_threads", None)
    before = torch.get_num_threads()
    try:
        apply_command_threads(ScoreSettings(threads=1))
        assert torch.get_num_threads() == 1 and policy.process_threads() == 1
        assert capsys.readouterr().err == ""  # a settings error found now stays one line
        # load_clip without threads= follows the command's count, and prints it once
        assert vlmrm.load_clip("vlmrm-tiny", device="cpu").threads == 1
        assert vlmrm.load_clip("vlmrm-tiny", device="cpu").threads == 1
        assert capsys.readouterr().err == "torch threads: 1 (threads=1)\n"
    finally:
        torch.set_num_threads(before)


COMMAND_SETTINGS = [
    ("vlmrm.scoring.settings", "ScoreSettings"),
    ("vlmrm.scoring.settings", "RecordSettings"),
    ("vlmrm.tta.settings", "TTASettings"),
    ("vlmrm.tune.settings", "TuneConfig"),
    ("vlmrm.tune.finetune.settings", "FinetuneSettings"),
    ("vlmrm.tune.eval.settings", "EvalSettings"),
    ("vlmrm.tune.settings", "BuildConfig"),
    ("vlmrm.caption.settings", "CaptionTrainSettings"),
    ("vlmrm.caption.rerank", "RerankSettings"),
    ("vlmrm.label.settings", "AgreementSettings"),
    ("vlmrm.agents.settings", "TrainSettings"),
]


@pytest.mark.parametrize(("module", "name"), COMMAND_SETTINGS)
def test_every_command_takes_threads(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    assert fields.get("threads") == "auto"


def test_the_score_command_prints_its_thread_line_once(tmp_path, capsys, monkeypatch) -> None:
    import imageio.v3 as iio

    from vlmrm.score import main

    monkeypatch.setattr(policy, "_process_threads", None)
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(3):
        iio.imwrite(frames / f"{i:03d}.png", np.full((32, 32, 3), 40 * i, dtype=np.uint8))
    before = torch.get_num_threads()
    try:
        status = main([str(frames), "goal=a cat", "model=vlmrm-tiny", "device=cpu", "threads=1",
                       "plot=false", f"out={tmp_path / 'out'}"])  # fmt: skip
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err.splitlines()
    assert status == 0, err
    assert [ln for ln in err if ln.startswith("torch threads")] == ["torch threads: 1 (threads=1)"]
    # progress=false: plain logs, no setup lines
    monkeypatch.setattr(policy, "_process_threads", None)
    try:
        status = main([str(frames), "goal=a cat", "model=vlmrm-tiny", "device=cpu", "threads=1",
                       "plot=false", f"out={tmp_path / 'out2'}", "progress=false"])  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert status == 0 and "torch threads" not in capsys.readouterr().err


def test_a_command_that_ends_before_its_model_leaves_no_line_to_the_next(tmp_path, capsys) -> None:
    """A command that fails before it loads its CLIP (here: a video that does not exist) must
    not leave its pending thread line to the next model load of the same process."""
    from vlmrm.score import main as score_main

    assert score_main([str(tmp_path / "missing.mp4"), "goal=a cart", "model=vlmrm-tiny"]) == 2
    capsys.readouterr()
    vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
    assert "torch threads" not in capsys.readouterr().err
