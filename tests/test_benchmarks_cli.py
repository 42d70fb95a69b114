"""``benchmarks/offline_learning.py``'s arms and trainer settings, parsed and composed (no training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vlmrm.agents.config import compose_train_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "offline_learning.py"


@pytest.fixture(scope="module")
def ol():
    spec = importlib.util.spec_from_file_location("offline_learning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["offline_learning"] = module  # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("offline_learning", None)


def _config(ol, args, name: str, tmp_path: Path):
    arm = next(a for a in args.arms if a.name == name)
    weights = tmp_path / "tuned.safetensors" if arm.tuned else None
    overrides = ol.arm_overrides(args.env, arm, 0, args.rl_steps, tmp_path, args.size, weights, args.train)
    return overrides, compose_train_config(overrides)


def test_train_settings_reach_every_arm_after_its_own(ol, tmp_path: Path) -> None:
    args = ol.parse_args([
        "--env", "MountainCar", "--arms", "gt",
        "--arm", "ends", "clip", "reward.terminal=end", "reward.offset=0.9",
        "--arm", "scaled", "clip_centred", "reward.scale=10",
        "--train", "reward.center_frames=500", "agent.learning_rate=0.002",
        "--out", str(tmp_path),
    ])  # fmt: skip
    assert [(a.name, a.base, a.train) for a in args.arms] == [
        ("gt", "gt", ()),
        ("ends", "clip", ("reward.terminal=end", "reward.offset=0.9")),
        ("scaled", "clip_centred", ("reward.scale=10",)),
    ]
    assert args.train == ["reward.center_frames=500", "agent.learning_rate=0.002"]

    overrides, cfg = _config(ol, args, "ends", tmp_path)
    assert overrides[-4:] == [
        "reward.terminal=end", "reward.offset=0.9", "reward.center_frames=500", "agent.learning_rate=0.002"
    ]  # fmt: skip
    # MountainCar's env file centres and makes the flag absorbing: the arm's settings win
    assert (cfg.reward.name, cfg.reward.terminal, cfg.reward.offset) == ("tiny", "end", 0.9)
    assert cfg.reward.center is True and cfg.reward.center_frames == 500
    assert cfg.agent.learning_rate == pytest.approx(0.002)
    assert str(cfg.reward.pretrained).endswith("tuned.safetensors")
    assert cfg.run_name == "ends-seed0"

    _, cfg = _config(ol, args, "scaled", tmp_path)
    assert (cfg.reward.scale, cfg.reward.terminal, cfg.reward.center) == (10.0, "absorbing", True)
    assert cfg.agent.learning_rate == pytest.approx(0.002)

    _, cfg = _config(ol, args, "gt", tmp_path)
    assert cfg.reward.name == "ground_truth"
    assert cfg.agent.learning_rate == pytest.approx(0.002)  # --train reaches the gt arm too

    assert ol.check_arms(args) is None


def test_default_arms(ol) -> None:
    assert [a.name for a in ol.parse_args([]).arms] == ["clip", "gt"]
    assert ol.parse_args(["--arms", ""]).arms == []
    only = ol.parse_args(["--arm", "x", "untuned"]).arms
    assert [(a.name, a.base, a.train) for a in only] == [("x", "untuned", ())]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--train", "reward.scale"], "not KEY=VALUE"),
        (["--arm", "a", "clip", "reward.scale"], "not KEY=VALUE"),
        (["--arm", "a"], "give NAME BASE"),
        (["--arm", "a", "nosuch"], "unknown base arm 'nosuch'"),
        (["--arm", "a/b", "clip"], "letters, digits"),
        (["--arms", "gt", "--arm", "gt", "clip"], "given twice"),
        (["--arms", "clip,nosuch"], "unknown arm(s) ['nosuch']"),
    ],
)
def test_bad_arms_are_one_error_line(ol, capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        ol.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_trainer_setting_stops_before_any_stage(ol, capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = ol.main(["--arm", "a", "clip", "--train", "reward.nosuch=1", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "error" in line or "Traceback" in line] == [
        "error: arm a: unknown setting 'reward.nosuch' (did you mean 'reward.scale'?); "
        "see --help for every setting"
    ]
    assert not out.exists()  # no dataset, no tuning


def test_arms_table_reports_the_share_of_the_ground_truth_agent(ol) -> None:
    res = ol.SeedResult(0)
    res.returns = {"random": -33.2, "gt": 94.1, "absorbing": 92.2, "centred": -43.8}
    res.return_std = {"random": 1.0, "gt": 1.3, "absorbing": 0.3, "centred": 2.0}
    res.offsets = {"absorbing": 0.064, "centred": 0.064}
    res.seconds = {"rl_gt": 340.0, "rl_absorbing": 390.4, "rl_centred": 400.0}
    arms = [ol.Arm("gt", "gt"), ol.Arm("absorbing", "clip", ("reward.terminal=absorbing",)),
            ol.Arm("centred", "clip", ("reward.terminal=end",))]
    lines = ol.arms_table([res], arms, 20).splitlines()
    assert lines[0].startswith("| arm | settings | seed | ground-truth return (mean ± std, 20 episodes)")
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert list(rows) == ["random", "gt", "absorbing", "centred"]
    assert rows["absorbing"] == (
        "| absorbing | `clip reward.terminal=absorbing` | 0 | 92.2 ± 0.3 | 98.0% | 0.064 | 390 |"
    )
    assert "| -43.8 ± 2.0 | -46.5% | 0.064 | 400 |" in rows["centred"]
    assert rows["gt"] == "| gt | `gt` | 0 | 94.1 ± 1.3 |  |  | 340 |"


def _script(name: str):
    path = SCRIPT.with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_int8_study_plants_outliers_in_every_layernorm_and_rejects_unknown_sections(capsys) -> None:
    import torch

    import vlmrm

    study = _script("int8_study")
    with pytest.raises(SystemExit):
        study.main(["--sections", "gemm,nosuch"])
    assert "unknown section(s) ['nosuch']" in capsys.readouterr().err

    model = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32").model
    before = {k: v.clone() for k, v in model.visual.transformer.state_dict().items() if ".ln_" in k}
    study.plant_outliers(model, factor=20.0, channels=3, seed=0)
    after = model.visual.transformer.state_dict()
    assert before  # every block has ln_1 and ln_2
    for key, old in before.items():
        new = after[key]
        changed = (new != old).nonzero().flatten()
        assert len(changed) <= 3, key  # 3 channels (a zero bias stays zero)
        if key.endswith("weight"):
            assert len(changed) == 3, key
            torch.testing.assert_close(new[changed], 20.0 * old[changed])


def test_int8_study_openvino_section_measures_every_variant_against_torch_fp32(capsys) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    study = _script("int8_study")
    study.main(["--sections", "openvino", "--model", "vlmrm-tiny", "--frame-size", "64x64", "--repeats", "1", "--threads", "1"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "×" in line]
    got = {r[0].lstrip("| "): float(r[2]) for r in rows}
    assert len(got) == 8 and "fp32" in got
    assert got["fp32"] > 0.99999  # OpenVINO fp32 ranks the frames as torch fp32 does
    static = got["static int8, 64 calibration frames"]
    assert 0.9 < static < 1.0  # quantised: close, not exact
