"""A full disk and a read-only disk, met as a user meets them: one ``error:`` line naming the
folder, the free space and what was kept; no half-written checkpoint left taking the space;
the run resumes once there is space again.

The disk is a real one: a small ``tmpfs`` mounted for the test (as root, where ``mount``
works), and a read-only bind mount of a run folder. Where that is impossible the tests are
skipped, saying so; the message itself is also checked on synthetic errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vlmrm.runtime.storage import StorageError, storage_error_line

REPO = Path(__file__).resolve().parents[1]
GT = ["env=CartPole", "reward=ground_truth", "n_envs=1", "subprocess=false", "checkpoint_every=100",
      "agent.learning_starts=20", "agent.train_freq=10", "agent.gradient_steps=1", "agent.buffer_size=1000",
      "agent.target_update_interval=100", "eval.episodes=0", "progress=false", "threads=1"]


def _mount(*args: str) -> str | None:
    """Run ``mount ARGS``; the reason it failed, or None."""
    if os.name != "posix" or shutil.which("mount") is None:
        return "no mount command"
    if os.geteuid() != 0:
        return "mounting needs root"
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int):
    """A ``size_kb`` tmpfs mounted at ``path`` for the block (skips the test where it cannot)."""
    path.mkdir(parents=True, exist_ok=True)
    problem = _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path))
    if problem is not None:
        pytest.skip(f"full disk not tested: cannot mount a {size_kb} kB tmpfs here ({problem})")
    print(f"full disk: a {size_kb} kB tmpfs at {path}")  # which disk the test used (pytest -s / -rP)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk of ``folder`` is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    try:  # and the last few bytes
        with open(filler, "ab", buffering=0) as fh:
            while True:
                fh.write(b"\0")
    except OSError:
        pass
    assert shutil.disk_usage(folder).free == 0
    return filler


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"training ended ({proc.returncode}) before {what}:\n{proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _one_error(err: str) -> str:
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("error: "), err
    assert "Traceback" not in err, err
    return errors[0]


@pytest.mark.slow
def test_a_full_disk_during_training_keeps_the_last_checkpoint_and_resumes(tmp_path, capsys):
    from vlmrm.agents import latest_checkpoint
    from vlmrm.train import main as train_main

    with tmpfs(tmp_path / "disk", 8192) as disk:
        run = disk / "r"
        proc = subprocess.Popen(
            [sys.executable, "-m", "vlmrm.train", *GT, "total_steps=1000000", f"out={disk}", "run_name=r"],
            cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            _wait_for(lambda: (run / "checkpoints" / "latest.json").exists(), 240, "the first checkpoint", proc)
            filler = fill(disk)
            _, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 2, err
        line = _one_error(err)
        kept = latest_checkpoint(run)  # verified: every file matches its manifest
        assert line.startswith(f"error: {run}: no space left on the device (")
        assert "B free of " in line
        assert line.endswith(f"the checkpoint of step {kept.step} is intact; free space and resume with: "
                             f"python -m vlmrm.train resume={run}"), line
        assert not list(run.rglob("*.partial")) and not list(run.rglob("*.tmp*"))  # the space came back
        filler.unlink()
        capsys.readouterr()
        assert train_main([f"resume={run}", f"total_steps={kept.step + 100}"]) == 0
        assert f"resuming from checkpoints/step_{kept.step:09d}" in capsys.readouterr().err
        assert latest_checkpoint(run).step == kept.step + 100


def test_a_full_disk_under_the_score_outputs_is_one_line(tmp_path, capsys):
    from vlmrm.score import main as score_main
    from vlmrm.video import write_video

    video = tmp_path / "move.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 255, (6, 48, 64, 3), dtype=np.uint8), fps=6)
    argv = [str(video), "goal=a white square", "model=vlmrm-tiny", "device=cpu", "progress=false"]
    with tmpfs(tmp_path / "disk", 1024) as disk:
        out = disk / "scores"
        filler = fill(disk)
        capsys.readouterr()
        assert score_main([*argv, f"out={out}"]) == 2
        line = _one_error(capsys.readouterr().err)
        assert line.startswith(f"error: {out}: no space left on the device") and "B free of 1.0 MB" in line, line
        assert line.endswith("free space and run the same command again"), line
        assert not [p for p in out.rglob("*") if p.is_file()]  # nothing half-written left
        filler.unlink()
        assert score_main([*argv, f"out={out}"]) == 0
        assert (out / "scores.csv").read_text().count("\n") == 7  # a header and the 6 frames


def test_resume_on_a_read_only_disk_fails_at_once(tmp_path, capsys, monkeypatch):
    from vlmrm.agents import runner
    from vlmrm.train import main as train_main

    assert train_main([*GT, "total_steps=100", f"out={tmp_path}", "run_name=r"]) == 0
    ro = tmp_path / "ro"
    ro.mkdir()
    problem = _mount("--bind", str(tmp_path / "r"), str(ro))
    if problem is not None:
        pytest.skip(f"read-only disk not tested: cannot bind-mount here ({problem})")
    try:
        problem = _mount("-o", "remount,ro,bind", str(ro))
        if problem is not None:
            pytest.skip(f"read-only disk not tested: cannot remount read-only here ({problem})")
        print(f"read-only disk: a read-only bind mount at {ro}")

        def loaded(*a, **k):
            raise AssertionError("the environment was built before the read-only folder was refused")

        monkeypatch.setattr(runner, "env_factory", loaded)
        capsys.readouterr()
        assert train_main([f"resume={ro}", "total_steps=200"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        line = _one_error(err)
        assert line == (f"error: {ro}: the file system is read-only (writing .lock); nothing was written; "
                        "make it writable (or copy the folder to a writable disk) and run the same command again")
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


# -- the message, on synthetic errors ---------------------------------------------------------


def test_storage_errors_are_recognised_through_wrappers(tmp_path):
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp_path / "a.csv"))
    assert storage_error_line(quota).startswith(f"{tmp_path}: the disk quota is exceeded (writing a.csv; ")
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x" / "b.png"))
    assert storage_error_line(denied) == (
        f"{tmp_path / 'x'}: permission denied (writing b.png); files written before are intact; "
        "make the folder writable for you and run the same command again"
    )
    try:  # torch's writer reports a full disk as a RuntimeError whose cause is the OSError
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from exc
    except RuntimeError as exc:
        line = storage_error_line(exc, tmp_path)
    assert line.startswith(f"{tmp_path}: no space left on the device (") and "free of" in line
    assert storage_error_line(RuntimeError("[Errno 30] Read-only file system: '/x/y'")) is not None
    assert storage_error_line(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert storage_error_line(ValueError("bad value")) is None


def test_a_wrapped_storage_error_under_a_run_lock_becomes_one_line(tmp_path):
    from vlmrm.runtime.lock import RunLock

    with pytest.raises(StorageError) as caught, RunLock(tmp_path, kept=lambda: "the checkpoint of step 7 is intact; "
                                                        f"resume with: python -m vlmrm.train resume={tmp_path}"):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("file write failed") from exc
    assert str(caught.value).endswith(
        f"the checkpoint of step 7 is intact; free space and resume with: python -m vlmrm.train resume={tmp_path}"
    )


def test_a_full_disk_under_label_sheets_is_one_line_and_leaves_nothing(tmp_path, capsys):
    from vlmrm.label.cli import main as label_main
    from vlmrm.video import write_video

    video = tmp_path / "v.mp4"
    write_video(video, np.random.default_rng(1).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8), fps=4)
    with tmpfs(tmp_path / "disk", 512) as disk:
        out = disk / "sheets"
        filler = fill(disk)
        capsys.readouterr()
        assert label_main([str(video), f"out={out}", "progress=false"]) == 2
        line = _one_error(capsys.readouterr().err)
        assert line.startswith(f"error: {out}: no space left on the device (") and "free of 524.3 kB" not in line
        assert line.endswith("files written before are intact; free space and run the same command again"), line
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no half-written folder, no lock file
        filler.unlink()
        assert label_main([str(video), f"out={out}", "progress=false"]) == 0
        assert (out / "labels.csv").read_text().count("\n") == 5
