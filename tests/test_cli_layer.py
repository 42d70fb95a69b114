"""The argument layer every command is built on: parsing, --help from field docstrings, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from vlmrm.checks import (
    check_alpha,
    check_alphas,
    check_device,
    check_model_spec,
    check_precision,
)
from vlmrm.cli.args import Command, field_docs, help_text, parse_settings, report_error, run
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError


@dataclass
class Inner:
    every: int = 10
    """Steps between evaluations."""
    video: bool = True
    """Write a video."""


@dataclass
class Demo(ClipSettings, RunSettings):
    alpha: Any = 0.0
    """Goal-baseline regularisation in [0, 1]."""
    videos: Any = None
    """Video files."""
    out: str = "scores"
    """Where the scores go."""
    eval: Inner = field(default_factory=Inner)
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Free keyword arguments."""

    def validate(self) -> Demo:
        self.check_clip()
        self.alpha = check_alphas(self.alpha)
        return self


DEMO = Command("python -m demo", Demo, "Demonstrate the layer.", ("python -m demo a.mp4 alpha=0.5",), positional="videos")


def test_field_docstrings_are_read_with_inheritance_and_overrides():
    docs = field_docs(Demo)
    assert docs["alpha"] == "Goal-baseline regularisation in [0, 1]."
    assert docs["out"] == "Where the scores go."  # re-declared: the subclass's text wins
    assert docs["seed"] == "Random seed."  # inherited from RunSettings
    assert docs["model"].startswith("The CLIP: ARCH/TAG")  # multi-line docstring, one line


def test_help_lists_every_setting_with_default_and_docstring():
    text = help_text(DEMO)
    assert text.startswith("usage: python -m demo [VIDEOS ...] key=value ...")
    for line in ("  alpha=0.0", "  out=scores", "  eval.every=10", "  device=auto", "  seed=0", "  config=FILE"):
        assert line in text.splitlines(), line
    assert "Steps between evaluations." in text
    assert "python -m demo a.mp4 alpha=0.5" in text


def test_parse_types_nested_lists_positional_and_validation():
    s = parse_settings(Demo, ["a.mp4", "alpha=[0,0.5,1]", "eval.every=3", "seed=7", "b.mp4", "kwargs.net_arch=[64,64]"], "videos")
    assert s.videos == ["a.mp4", "b.mp4"]
    assert s.alpha == [0.0, 0.5, 1.0]
    assert isinstance(s.eval, Inner) and s.eval.every == 3 and s.eval.video is True
    assert s.seed == 7 and s.kwargs == {"net_arch": [64, 64]}


def test_a_number_given_to_the_positional_key_joins_the_bare_words():
    # videos=3 beside a bare word: a list of both, not a TypeError from list(3)
    s = parse_settings(Demo, ["videos=3", "a.mp4"], "videos")
    assert s.videos == ["3", "a.mp4"]
    s = parse_settings(Demo, ["videos=[x.mp4,y.mp4]", "a.mp4"], "videos")
    assert s.videos == ["x.mp4", "y.mp4", "a.mp4"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["alpah=0.5"], r"unknown setting 'alpah' \(did you mean 'alpha'\?\)"),
        (["eval.evry=3"], r"unknown setting 'eval.evry' \(did you mean 'eval.every'\?\)"),
        (["seed=abc"], r"bad value for 'seed'"),
        (["alpha=2"], r"alpha must lie in \[0, 1\]"),
        (["--verbose"], r"unknown option '--verbose'"),
        (["=3"], r"missing key before '='"),
        (["model=ViT-B-32@w.safetensors"], r"model=ViT-B-32 pretrained=w.safetensors"),
        (["precision=half"], r"precision='half' is not one of"),
        (["device=gpu"], r"device='gpu' is not a device"),
    ],
)
def test_bad_settings_are_one_clear_error(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse_settings(Demo, argv, "videos")


def test_config_file_is_read_before_the_command_line(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("seed: 3\nalpha: 0.5\neval:\n  every: 99\n")
    s = parse_settings(Demo, [f"config={cfg}", "seed=4"], "videos")
    assert (s.seed, s.alpha, s.eval.every) == (4, [0.5], 99)
    cfg.write_text("sede: 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'sede' in .*run.yaml \(did you mean 'seed'\?\)"):
        parse_settings(Demo, [f"config={cfg}"], "videos")
    with pytest.raises(ConfigError, match="cannot read config="):
        parse_settings(Demo, [f"config={tmp_path / 'missing.yaml'}"], "videos")


def test_run_exit_statuses_and_one_error_line(capsys):
    assert run(DEMO, ["--help"], lambda s: 0) == 0
    assert "settings (key=value" in capsys.readouterr().out
    assert run(DEMO, ["alpha=0.5", "x.mp4"], lambda s: 1 if s.videos == ["x.mp4"] else 0) == 1
    assert run(DEMO, ["alpah=0.5"], lambda s: 0) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown setting 'alpah'")

    def fails(s):
        raise ConfigError("the file is missing\nsecond line")

    assert run(DEMO, [], fails) == 2
    assert capsys.readouterr().err.strip() == "error: the file is missing"

    def interrupted(s):
        raise KeyboardInterrupt

    assert run(DEMO, [], interrupted) == 130


def test_shared_errors_are_reported_by_rank_zero_only(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    report_error(ConfigError("bad"), shared=True)
    assert capsys.readouterr().err == ""
    report_error(ConfigError("only here"))
    assert capsys.readouterr().err.strip() == "[rank 1] error: only here"
    monkeypatch.setenv("RANK", "0")
    report_error(ConfigError("bad"), shared=True)
    assert capsys.readouterr().err.strip() == "error: bad"


def test_alpha_is_checked_in_one_place_with_one_message():
    assert check_alpha("0.5") == 0.5
    for bad in (-0.1, 1.5, "x", None, True, float("nan")):
        with pytest.raises(ConfigError, match="alpha must"):
            check_alpha(bad)
    with pytest.raises(ConfigError, match=r"alpha=0.5 needs a baseline prompt"):
        check_alpha(0.5, has_baseline=False)
    assert check_alpha(0.0, has_baseline=False) == 0.0
    with pytest.raises(ConfigError, match="empty list"):
        check_alphas([])


def test_vocabulary_checks():
    assert check_device(None) == "auto" and check_device("CUDA:1") == "cuda:1"
    assert check_precision("FP32") == "fp32"
    assert check_model_spec("ViT-B-32/openai") == "ViT-B-32/openai"
    assert check_model_spec("hf-hub:org/repo@main") == "hf-hub:org/repo@main"
    with pytest.raises(ConfigError, match="give either"):
        check_model_spec("ViT-B-32/openai", "w.safetensors")


def test_a_prompt_read_as_a_mapping_says_to_quote_it():
    with pytest.raises(ConfigError, match=r"alpha was read as a mapping .*quote values that contain ': '"):
        parse_settings(Demo, ["alpha.x=1"], "videos")


def test_help_is_printed_once_under_torchrun(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "2")
    assert run(DEMO, ["--help"], lambda s: 0) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "name, key", [("model", "pretrained"), ("reward_model", "reward_pretrained"), ("reward.model", "reward.pretrained"), ("base", "base_pretrained")]
)
def test_the_retired_at_form_names_the_weights_setting_of_its_model(name, key):
    with pytest.raises(ConfigError, match=rf"{name}=ViT-B-32 {key}=w.pt$"):
        check_model_spec("ViT-B-32@w.pt", name=name)
