"""``python -m vlmrm.tune.finetune`` continues a run stopped by SIGKILL, Ctrl-C or SIGTERM.

The faults strike at chosen steps (``tests/_finetune_driver.py``), and each rerun of the
same command must end with the weights of an uninterrupted run of the same settings and
a history that holds every step and every epoch once.

The run: ``vlmrm-tiny`` on drawn shapes, 48 training images in batches of 16 (3 steps an
epoch), 2 supervised epochs then 1 RL epoch: steps 1-9. Checkpoints (``checkpoint_every=2``):
2, 3 (epoch end), 4, 6 (epoch end, and the end of the supervised stage), 8, 9 (the end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _captions import shapes_dataset
from safetensors.torch import load_file

from vlmrm.tune.finetune import main
from vlmrm.tune.finetune.run import finetune

HERE = Path(__file__).resolve().parent
STEPS = 9


def settings(data: Path, out: Path) -> list[str]:
    return [f"data={data}", "model=vlmrm-tiny", "device=cpu", "stage=sft+rl", "epochs=2", "rl_epochs=1",
            "lr=1e-4", "rl_lr=1e-4", "batch_size=16", "checkpoint_every=2", "progress=false", f"out={out}"]


def kwargs(argv: list[str]) -> dict:
    """``key=value`` settings as keyword arguments of :func:`finetune` (the rerun in-process)."""
    out = {}
    for item in argv:
        key, value = item.split("=", 1)
        out[key] = {"false": False}.get(value, int(value) if value.isdigit() else value)
    out["lr"], out["rl_lr"] = float(out["lr"]), float(out["rl_lr"])
    return out


def faulty(fault: str, step: int, argv: list[str]) -> subprocess.CompletedProcess:
    """The command in a fresh process, with ``fault`` at ``step``."""
    return subprocess.run([sys.executable, str(HERE / "_finetune_driver.py"), fault, str(step), *argv],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def units(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return shapes_dataset(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> tuple[Path, dict]:
    """The uninterrupted run of the same settings: the reference."""
    out = tmp_path_factory.mktemp("straight")
    doc = finetune(**kwargs(settings(data, out)))
    assert [s["step"] for s in doc["steps"]] == list(range(1, STEPS + 1))
    assert [(h["stage"], h["epoch"]) for h in doc["history"]] == [("sft", 1), ("sft", 2), ("rl", 1)]
    return out, doc


def assert_same_run(out: Path, doc: dict, straight: tuple[Path, dict]) -> None:
    ref_out, ref = straight
    # each step and each epoch once, with the losses of the straight run
    assert [s["step"] for s in doc["steps"]] == list(range(1, STEPS + 1)), doc["steps"]
    assert [(s["stage"], s["epoch"]) for s in doc["steps"]] == [(s["stage"], s["epoch"]) for s in ref["steps"]]
    torch.testing.assert_close(torch.tensor([s["loss"] for s in doc["steps"]]),
                               torch.tensor([s["loss"] for s in ref["steps"]]))
    assert len(doc["history"]) == 3 and [(h["stage"], h["epoch"]) for h in doc["history"]] == [
        (h["stage"], h["epoch"]) for h in ref["history"]]
    for got, want in zip(doc["history"], ref["history"], strict=True):
        assert got["val/mean_R@1"] == pytest.approx(want["val/mean_R@1"]) and got["loss"] == pytest.approx(want["loss"])
    assert doc["tuned"] == pytest.approx(ref["tuned"]) and doc["zero_shot"] == pytest.approx(ref["zero_shot"])
    assert json.loads((out / "metrics.json").read_text())["steps"] == doc["steps"]
    # the weights trained to the last step, and the best-on-val ones: those of the straight run
    last = f"checkpoints/step_{STEPS:09d}/model.safetensors"
    for name in (last, "model.safetensors"):
        got, want = load_file(out / name), load_file(ref_out / name)
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], msg=lambda m, k=k, name=name: f"{name} {k}: {m}")
    assert units(out) == [f"step_{STEPS - 1:09d}", f"step_{STEPS:09d}"]  # two kept, no scratch left


def test_killed_at_two_points_and_rerun_ends_like_a_straight_run(data, straight, tmp_path, capsys):
    out = tmp_path / "run"
    argv = settings(data, out)
    # 1: SIGKILL right after the checkpoint of step 4 is published (before the oldest is pruned)
    first = faulty("kill-after-publish", 4, argv)
    assert first.returncode == -9, first.stderr[-2000:]
    assert units(out) == ["step_000000002", "step_000000003", "step_000000004"]
    # 2: the same command continues from step 4; SIGKILL in the middle of the save of step 8
    second = faulty("kill-mid-save", 8, argv)
    assert second.returncode == -9, second.stderr[-2000:]
    assert f"resuming {out} at step 4 (stage 1, epoch 2, batch 2)" in second.stderr, second.stderr[-2000:]
    assert units(out) == ["step_000000004", "step_000000006", "step_000000008.partial"]
    # 3: the same command again: from step 6 (the end of the supervised stage) to the end
    trained: list[int] = []
    doc = finetune(**kwargs(argv), callback=lambda step, row: trained.append(step))
    err = capsys.readouterr().err
    assert f"resuming {out} at step 6 (stage 1, epoch 3, batch 1)" in err and "skipping" not in err, err
    assert trained == [7, 8, 9]  # only the steps left: the run continued, it did not start over
    assert_same_run(out, doc, straight)


@pytest.mark.parametrize("fault", ["sigint", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_says_so_in_one_line(data, straight, tmp_path, fault, capsys):
    out = tmp_path / "run"
    argv = settings(data, out)
    stopped = faulty(fault, 5, argv)
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr, stopped.stderr[-2000:]
    lines = stopped.stderr.strip().splitlines()
    assert lines == [f"{fault.upper()}: stopped at step 5, checkpoint saved in {out}; run the same command to continue"]
    assert units(out) == ["step_000000004", "step_000000005"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] and [s["step"] for s in metrics["steps"]] == [1, 2, 3, 4, 5]
    trained: list[int] = []
    doc = finetune(**kwargs(argv), callback=lambda step, row: trained.append(step))  # the same settings again
    assert f"resuming {out} at step 5 (stage 1, epoch 2, batch 3)" in capsys.readouterr().err
    assert trained == [6, 7, 8, 9]
    assert_same_run(out, doc, straight)


def test_resume_refuses_other_settings_and_resume_false_starts_over(data, straight, tmp_path, capsys):
    ref_out, _ = straight
    out = tmp_path / "run"
    import shutil

    shutil.copytree(ref_out, out)
    argv = settings(data, out)
    assert main([*argv, "lr=2e-4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out} holds a fine-tuning run with other settings (lr: 0.0001 → 0.0002); use "
                   "another out=..., the same settings, or resume=false to start over"], err
    assert main([*argv, "resume=false", "epochs=1", "stage=sft"]) == 0
    assert units(out) == ["step_000000002", "step_000000003"]  # the earlier run's later ones are gone
    assert "resuming" not in capsys.readouterr().err


def test_a_damaged_newest_checkpoint_is_skipped_with_one_line(data, straight, tmp_path, capsys):
    import shutil

    out = Path(shutil.copytree(straight[0], tmp_path / "run"))
    state = out / "checkpoints" / f"step_{STEPS:09d}" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    trained: list[int] = []
    doc = finetune(**kwargs(settings(data, out)), callback=lambda step, row: trained.append(step))
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"[vlmrm.tune.finetune] skipping damaged checkpoint step_{STEPS:09d}: "
                             "trainer_state.pt has 100 bytes"), err
    assert err[1].startswith(f"resuming {out} at step 8") and len(err) == 2, err
    assert trained == [9]
    assert_same_run(out, doc, straight)
