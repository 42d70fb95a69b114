"""``checkpoints/best.zip``: the agent of the best periodic evaluation, kept across resumes and pruning."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _runs import tb_scalars as _tb_scalars

from vlmrm.agents.best import BestAgent, read_best, resolve_best_metric
from vlmrm.errors import ConfigError
from vlmrm.evaluate import main as evaluate_main
from vlmrm.train import main as train_main

QUIET = ["progress=false"]


class FakeAgent:
    """Stands in for an SB3 agent: ``save`` writes which step it is."""

    def __init__(self, step: int) -> None:
        self.num_timesteps = step

    def save(self, path) -> None:
        Path(path).write_text(f"agent of step {self.num_timesteps}")


def _summary(gt=None, clip=None, success=None):
    return SimpleNamespace(gt_return=gt, clip_return=clip, success_rate=success, episodes=[object()] * 2)


# -- the metric and the files ----------------------------------------------------------------


def test_metric_names_resolve():
    assert resolve_best_metric("auto", has_clip_reward=True) == "clip_return"
    assert resolve_best_metric("auto", has_clip_reward=False) == "gt_return"
    assert resolve_best_metric("success", has_clip_reward=False) == "success"
    with pytest.raises(ConfigError, match="needs a CLIP reward"):
        resolve_best_metric("clip_return", has_clip_reward=False)
    with pytest.raises(ConfigError, match="eval.best_metric"):
        resolve_best_metric("reward", has_clip_reward=True)


def test_keeps_the_strictly_best_and_survives_a_resume(tmp_path):
    best = BestAgent(tmp_path, "gt_return", warn=pytest.fail)
    values = {100: 1.0, 200: 3.0, 300: 2.0, 400: 3.0, 500: None}
    saved = [best(FakeAgent(step), _summary(gt=v)) for step, v in values.items()]
    assert saved == [True, True, False, False, False]  # a tie keeps the earlier agent
    info = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert (info["step"], info["metric"], info["value"], info["episodes"]) == (200, "gt_return", 3.0, 2)
    zip_path = tmp_path / "checkpoints" / "best.zip"
    assert zip_path.read_text() == "agent of step 200"
    assert info["sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.json", "best.zip"]  # no temp files

    resumed = BestAgent(tmp_path, "gt_return", warn=pytest.fail)  # a resumed run: the bar is 3.0
    assert not resumed(FakeAgent(600), _summary(gt=2.5))
    assert zip_path.read_text() == "agent of step 200"
    assert resumed(FakeAgent(700), _summary(gt=3.5))
    assert zip_path.read_text() == "agent of step 700" and read_best(tmp_path)["value"] == 3.5


def test_another_metric_or_damaged_files_are_replaced_with_a_notice(tmp_path):
    BestAgent(tmp_path, "gt_return")(FakeAgent(100), _summary(gt=50.0, success=0.0))
    notes: list[str] = []
    other = BestAgent(tmp_path, "success", warn=notes.append)
    assert "chosen by gt_return" in notes[0]
    assert other(FakeAgent(200), _summary(gt=1.0, success=0.0))  # any value beats "none yet"
    zip_path = tmp_path / "checkpoints" / "best.zip"
    zip_path.write_text("agent of step 2")  # truncated
    with pytest.raises(ConfigError, match="damaged or truncated"):
        read_best(tmp_path)
    notes.clear()
    again = BestAgent(tmp_path, "success", warn=notes.append)
    assert "damaged or truncated" in notes[0] and again.best is None


# -- in a training run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def best_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("best")
    argv = ["env=CartPole", "reward=tiny", "n_envs=2", "total_steps=500", "env.render_size=[64,64]",
            "agent.learning_starts=60", "agent.train_freq=10", "agent.gradient_steps=4",
            "agent.exploration_fraction=0.3", "eval.every=100", "eval.episodes=1", "eval.video=false",
            "checkpoint_every=100", "keep_checkpoints=1", f"out={out}", "run_name=run"] + QUIET
    assert train_main(argv) == 0
    return out / "run"


@pytest.mark.slow
def test_best_is_the_max_of_the_logged_evaluations(best_run, tmp_path, capsys):
    info = json.loads((best_run / "checkpoints" / "best.json").read_text())
    scalars = _tb_scalars(best_run)
    clip = scalars["eval/clip_return"]
    assert len(clip) >= 5  # every 100 steps and the final one
    assert info["metric"] == "clip_return"  # the default with a CLIP reward
    top = max(v for _, v in clip)
    assert info["value"] == pytest.approx(top, rel=1e-5)
    first_top = min(s for s, v in clip if v == top)
    assert info["step"] == first_top
    # pruning kept one step folder, and never the best agent
    steps = [p.name for p in (best_run / "checkpoints").iterdir() if p.name.startswith("step_")]
    assert steps == ["step_000000500"] and (best_run / "checkpoints" / "best.zip").is_file()

    # best.zip is the agent evaluated at that step: the same seeded episode gives the same returns
    out = tmp_path / "eval"
    argv = [f"run={best_run}", "checkpoint=best", "episodes=1", "video=false",
            f"seed={10_000 + info['step']}", f"out={out}"]
    assert evaluate_main(argv) == 0
    assert "best.zip" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["clip_return"] == pytest.approx(info["value"], rel=1e-5)
    gt_at_step = dict(scalars["eval/gt_return"])[info["step"]]
    assert results["gt_return"] == pytest.approx(gt_at_step)


@pytest.mark.slow
def test_resume_keeps_a_better_earlier_best(best_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(best_run, run)
    info_path = run / "checkpoints" / "best.json"
    info = json.loads(info_path.read_text())
    info["value"] = 1e9  # no later evaluation can beat it
    info_path.write_text(json.dumps(info))
    before = (run / "checkpoints" / "best.zip").read_bytes()
    assert train_main([f"resume={run}", "total_steps=700"] + QUIET) == 0
    assert json.loads(info_path.read_text()) == info
    assert (run / "checkpoints" / "best.zip").read_bytes() == before
    assert len(_tb_scalars(run)["eval/clip_return"]) > len(_tb_scalars(best_run)["eval/clip_return"])


@pytest.mark.slow
def test_truncated_best_zip_gives_one_clear_line(best_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(best_run, run)
    data = (run / "checkpoints" / "best.zip").read_bytes()
    (run / "checkpoints" / "best.zip").write_bytes(data[: len(data) // 2])
    assert evaluate_main([f"run={run}", "checkpoint=best", "episodes=1", "video=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "best.zip is damaged or truncated" in err, err
    (run / "checkpoints" / "best.zip").unlink()
    (run / "checkpoints" / "best.json").unlink()
    assert evaluate_main([f"run={run}", "checkpoint=best", "episodes=1", "video=false"]) == 2
    assert "holds no best.zip" in capsys.readouterr().err


def test_metric_errors_are_one_line(tmp_path, capsys):
    gt = ["env=CartPole", "reward=ground_truth", "total_steps=10", f"out={tmp_path}"] + QUIET
    assert train_main([*gt, "eval.best_metric=clip_return"]) == 2
    assert "needs a CLIP reward" in capsys.readouterr().err
    assert train_main(["env=Pendulum-v1", "agent=td3", "reward=ground_truth", "eval.best_metric=success",
                       "total_steps=10", f"out={tmp_path}"] + QUIET) == 2
    err = capsys.readouterr().err.strip().splitlines()  # (a notice about the short run, then the error)
    assert err[-1].startswith("error: ") and "reports no success" in err[-1] and len(err) == 2, err
    assert not list(tmp_path.iterdir())  # refused before any run folder exists


def test_success_rate_is_a_metric(tmp_path):
    """CartPole reports success: best.json holds a success rate in [0, 1]."""
    argv = ["env=CartPole", "reward=ground_truth", "n_envs=2", "total_steps=60", "env.render_size=[64,64]",
            "eval.every=30", "eval.video=false", "eval.best_metric=success", f"out={tmp_path}", "run_name=r"] + QUIET
    assert train_main(argv) == 0
    info = read_best(tmp_path / "r")
    assert info["metric"] == "success" and 0.0 <= info["value"] <= 1.0
    assert np.isfinite(info["value"])
