"""One exit-status rule for a stop by a signal: every command that saves what it can resume
from (``train``, ``tune``, ``tta``, ``caption.train``) exits with 130 after the save, the
shell's status for an interrupted command, and the manual says so
(docs/troubleshooting.md); a sweep counts that status as ``preempted``, not ``failed``."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from vlmrm.runtime.stop import GracefulStop

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def signal_at_first_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every graceful stop starts with a SIGINT already taken: the command stops at its first
    safe point, as after a Ctrl-C (no timing race: no real signal is sent)."""
    enter = GracefulStop.__enter__

    def entered(self: GracefulStop) -> GracefulStop:
        enter(self)
        self.request(signal.SIGINT)
        GracefulStop.last = signal.SIGINT
        return self

    monkeypatch.setattr(GracefulStop, "__enter__", entered)


def test_train_exits_130_after_the_checkpoint_of_a_stop(tmp_path, signal_at_first_check, capsys):
    from vlmrm.agents.checkpoint import latest_checkpoint
    from vlmrm.train import main

    status = main(["env=CartPole", "reward=ground_truth", "total_steps=64", "n_envs=2", "subprocess=false",
                   "eval.episodes=0", "progress=false", f"out={tmp_path}", "run_name=r"])
    err = capsys.readouterr().err
    assert status == 130, err
    ckpt = latest_checkpoint(tmp_path / "r")
    assert ckpt.manifest["reason"] == "interrupted (SIGINT)" and ckpt.step < 64
    assert (f"[vlmrm.train] SIGINT: stopped at step {ckpt.step}, checkpoint saved; continue with: "
            f"python -m vlmrm.train resume={tmp_path / 'r'}") in err


def test_tune_exits_130_after_the_checkpoint_of_a_stop(tmp_path, signal_at_first_check, capsys):
    import json

    import numpy as np

    from vlmrm.runtime.images import save_png
    from vlmrm.tune.cli import main

    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        save_png(tmp_path / f"{i}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rows.append({"image": str(tmp_path / f"{i}.png"), "captions": [f"caption {i}", f"caption {i + 1}"]})
    (tmp_path / "ranked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "tune"
    status = main([f"data={tmp_path / 'ranked.jsonl'}", "model=vlmrm-tiny", "device=cpu", f"out={out}",
                   "steps=5", "batch_size=2", "tensorboard=false", "probe_size=4", "progress=false"])
    assert status == 130, capsys.readouterr()
    assert "stopped by signal at step 1; checkpoint saved" in capsys.readouterr().out
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000000001"]


def test_a_sweep_counts_130_as_preempted_not_failed(monkeypatch):
    from vlmrm.sweep import commands

    class Stopped:
        @staticmethod
        def main(argv):
            GracefulStop.last = signal.SIGUSR2
            return 130

    monkeypatch.setattr(commands, "_command_module", lambda name: Stopped)
    outcome = commands.COMMANDS["tune"].execute([])
    assert (outcome.status, outcome.signal) == (0, "SIGUSR2")


def test_the_manual_states_the_same_rule():
    """The fault table of docs/troubleshooting.md, and no page of the manual or the README, says otherwise."""
    table = (REPO / "docs" / "troubleshooting.md").read_text()
    row = next(ln for ln in table.splitlines() if ln.startswith("| Ctrl-C or SIGTERM |"))
    assert "exit 130" in row and "exit 0" not in row, row
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        text = page.read_text()
        assert not re.search(r"SIGUSR2?[^|\n]*\(exit 0", text), f"{page.name} still says a signal gives exit 0"
