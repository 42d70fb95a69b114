"""The tuning commands on the argument layer: help and bad settings before torch, renamed keys."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vlmrm.tune.settings import TuneConfig, upgrade_saved_settings

COMMANDS = ("vlmrm.tune.cli", "vlmrm.tune.build", "vlmrm.tune.rollouts")


@pytest.mark.parametrize("module", COMMANDS)
def test_help_and_bad_settings_answer_before_torch(module: str) -> None:
    code = (
        "import sys\n"
        f"from {module} import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['nonsense=1']) == 2\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m vlmrm.tune" in proc.stdout
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown setting 'nonsense'")


def test_help_is_the_field_docstrings(capsys: pytest.CaptureFixture) -> None:
    from vlmrm.tune.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for line in ("precision=auto", "reinforce_reward=correct", "progress=true", "device=auto", "pretrained=null"):
        assert line in out
    assert "REINFORCE reward: correct | rank | confidence." in out
    assert "amp=" not in out and "quiet" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data=x", "amp=off"], "unknown setting 'amp'"),
        (["data=x", "quiet=true"], "unknown setting 'quiet'"),
        (["data=x", "reward=rank"], "unknown setting 'reward'"),
        (["data=x", "precision=int8"], "precision='int8' is not one of"),
        (["data=x", "reinforce_reward=best"], "reinforce_reward='best' is not one of"),
        (["data=x", "model=ViT-B-32@w.safetensors"], "pretrained="),
        (["data=x", "device=gpu"], "is not a device"),
    ],
)
def test_renamed_and_checked_keys(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    from vlmrm.tune.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err


def test_config_file_and_new_keys(tmp_path) -> None:
    from vlmrm.cli.args import parse_settings

    (tmp_path / "run.yaml").write_text("loss: reinforce\nreinforce_reward: rank\nprecision: FP32\n")
    cfg = parse_settings(TuneConfig, [f"config={tmp_path / 'run.yaml'}", "data=x.jsonl", "progress=false"])
    assert (cfg.loss, cfg.reinforce_reward, cfg.precision, cfg.progress) == ("reinforce", "rank", "fp32", False)
    assert cfg.pretrained is None and cfg.device == "auto"


def test_saved_settings_of_older_runs_compare_in_todays_keys() -> None:
    old = {"amp": "off", "reward": "rank", "quiet": True, "pretrained": "", "beta": 0.1}
    assert upgrade_saved_settings(old) == {
        "precision": "fp32", "reinforce_reward": "rank", "progress": False, "pretrained": None, "beta": 0.1,
    }
    assert upgrade_saved_settings({"amp": "bf16"})["precision"] == "bf16"


def test_rollout_policies_match_the_env_controllers() -> None:
    from vlmrm.envs import controllers
    from vlmrm.tune.rollouts import settings as rollouts

    assert rollouts.POLICIES == controllers.POLICIES
    import ast

    tree = ast.parse(open(controllers.__file__, encoding="utf-8").read())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith(("vlmrm.agents", "vlmrm.tune"))], imported


def test_scripted_controllers() -> None:
    import numpy as np

    from vlmrm.envs.controllers import cartpole_action, mountaincar_action

    assert cartpole_action(np.array([0.0, 0.0, 0.1, 0.0])) == 1  # leaning right: push right
    assert cartpole_action(np.array([0.0, 0.0, -0.1, 0.0])) == 0
    assert mountaincar_action(np.array([-0.5, 0.01]))[0] == 1.0
    assert mountaincar_action(np.array([-0.5, 0.0]))[0] == -1.0  # at rest: push left first
