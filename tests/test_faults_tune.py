"""Tuning checkpoints under faults: SIGKILL at every step of a save, damaged files."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from _kill_saves import _arm
from test_tune_train import cfg, toy  # noqa: F401 (toy: a fixture)

import vlmrm
from vlmrm.errors import ConfigError
from vlmrm.tune.checkpoint import load_checkpoint, save_checkpoint
from vlmrm.tune.cli import main
from vlmrm.tune.trainer import train


def _kill_cases(base: Path, tmp_path: Path, c, monkeypatch) -> list[tuple[int, Path]]:
    """Fork one copy of ``base`` per file-system step of a save of step 2; each is SIGKILLed there."""
    monkeypatch.setenv("KILL_LOG", str(tmp_path / "kill.log"))
    state = torch.load(base / "checkpoints" / "step_000000001" / "trainer_state.pt", weights_only=False)
    model = vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=str(base / "model.safetensors")).model
    extra = {k: v for k, v in state.items() if k not in ("step", "config")}
    cases, k = [], 0
    while True:
        case = tmp_path / f"k{k:02d}"
        pid = os.fork()
        if pid == 0:
            try:
                shutil.copytree(base, case)
                _arm(k)
                save_checkpoint(case, model, c, 2, extra)
                os._exit(3)
            except BaseException:  # noqa: BLE001
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3, status
            return cases
        cases.append((k, case))
        k += 1


def test_every_kill_point_of_a_tuning_save_resumes(toy, tmp_path, monkeypatch):  # noqa: F811
    base = tmp_path / "base"
    c = cfg(toy, base, steps=1, checkpoint_every=1, loss="reinforce")
    train(c)
    cases = _kill_cases(base, tmp_path, c, monkeypatch)
    # weights, state (flush each), manifest (flush, rename, flush folder), folder rename and
    # flush, model.safetensors published (flush, rename, flush): 10 points
    assert len(cases) == 10, len(cases)
    resumed_from = []
    for k, case in cases:
        lines: list[str] = []
        state = load_checkpoint(cfg(toy, case, steps=3, loss="reinforce"), case, warn=lines.append)
        assert lines == [] and state["step"] in (1, 2), (k, lines)
        resumed_from.append(state["step"])
        res = train(cfg(toy, case, steps=3, checkpoint_every=1, loss="reinforce"))
        assert res.step == 3 and [s for s, _ in res.losses][-1] == 3, k
        assert vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=str(case / "model.safetensors"))
    # killed before the folder's rename: step 1; after it: step 2 — and nothing in between
    assert resumed_from == sorted(resumed_from) and set(resumed_from) == {1, 2}


@pytest.fixture
def two_checkpoints(toy, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    train(cfg(toy, out, steps=2, checkpoint_every=1, loss="reinforce"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000000001", "step_000000002"]
    return out


@pytest.mark.parametrize("file", ["model.safetensors", "trainer_state.pt", "manifest.json"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "wrong-format", "missing"])
def test_damaged_newest_tuning_checkpoint_falls_back(toy, two_checkpoints, file, damage, capsys):  # noqa: F811
    from test_faults import DAMAGES

    DAMAGES[damage](two_checkpoints / "checkpoints" / "step_000000002" / file)
    res = train(cfg(toy, two_checkpoints, steps=3, checkpoint_every=1, loss="reinforce"))
    err = capsys.readouterr().err
    assert err.count("skipping damaged checkpoint") == 1, err
    assert f"[vlmrm.tune] skipping damaged checkpoint step_000000002: {file}" in err, err
    assert res.step == 3 and [s for s, _ in res.losses] == [1, 2, 3]  # from step 1 again


def test_every_tuning_checkpoint_damaged_is_one_line(toy, two_checkpoints, capsys):  # noqa: F811
    for unit in (two_checkpoints / "checkpoints").iterdir():
        (unit / "model.safetensors").write_bytes(b"")
    argv = [f"data={toy}", "model=vlmrm-tiny", "device=cpu", f"out={two_checkpoints}", "steps=3", "loss=reinforce",
            "progress=false", "tensorboard=false"]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("[vlmrm.tune] skipping")]
    assert len(err) == 1 and err[0].startswith(f"error: {two_checkpoints}: every checkpoint is damaged"), err
    with pytest.raises(ConfigError, match="every checkpoint is damaged"):
        load_checkpoint(cfg(toy, two_checkpoints, steps=3, loss="reinforce"), two_checkpoints, warn=lambda m: None)


def test_resume_false_replaces_a_longer_earlier_run(toy, two_checkpoints):  # noqa: F811
    train(cfg(toy, two_checkpoints, steps=1, checkpoint_every=1, loss="reinforce", resume="false"))
    assert sorted(p.name for p in (two_checkpoints / "checkpoints").iterdir()) == ["step_000000001"]
    state = load_checkpoint(cfg(toy, two_checkpoints, steps=3, loss="reinforce"), two_checkpoints)
    assert state["step"] == 1
