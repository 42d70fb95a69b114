"""A full disk and a read-only disk, met as a user meets them: one ``error:`` line naming the
folder, the free space and what was kept; no half-written checkpoint left taking the space;
the run resumes once there is space again.

The full disk is a real one where the test may mount a small ``tmpfs`` (root), else ``ENOSPC``
injected into every write under the folder (:mod:`_full_disk`; each test prints which it
used, ``pytest -rP`` shows it; ``VLMRM_TEST_INJECT_DISK_FAULTS=1`` forces the injections). The
read-only disk is a read-only bind mount of a run folder, else ``EROFS`` injected into the
opening of its files.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _full_disk import INJECT, _mount, full_disk

from vlmrm.runtime.storage import StorageError, storage_error_line

REPO = Path(__file__).resolve().parents[1]
GT = ["env=CartPole", "reward=ground_truth", "n_envs=1", "subprocess=false", "checkpoint_every=100",
      "agent.learning_starts=20", "agent.train_freq=10", "agent.gradient_steps=1", "agent.buffer_size=1000",
      "agent.target_update_interval=100", "eval.episodes=0", "progress=false", "threads=1"]


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

    with full_disk(tmp_path / "disk", 8192) as disk:
        run = disk.path / "r"
        train = [*GT, "total_steps=1000000", f"out={disk.path}", "run_name=r"]
        prefix = ["-m"] if disk.tmpfs else ["-c", INJECT.format(tests=str(REPO / "tests")), str(disk.path), "-m"]
        proc = subprocess.Popen(
            [sys.executable, *prefix, "vlmrm.train", *train],
            cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            _wait_for(lambda: (run / "checkpoints" / "latest.json").exists(), 240, "the first checkpoint", proc)
            disk.fill()
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
        disk.free()
        capsys.readouterr()
        assert train_main([f"resume={run}", f"total_steps={kept.step + 100}"]) == 0
        assert f"resuming from checkpoints/step_{kept.step:09d}" in capsys.readouterr().err
        assert latest_checkpoint(run).step == kept.step + 100


def test_a_full_disk_under_the_score_outputs_is_one_line(tmp_path, capsys, monkeypatch):
    from vlmrm.score import main as score_main
    from vlmrm.video import write_video

    video = tmp_path / "move.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 255, (6, 48, 64, 3), dtype=np.uint8), fps=6)
    argv = [str(video), "goal=a white square", "model=vlmrm-tiny", "device=cpu", "progress=false"]
    with full_disk(tmp_path / "disk", 1024, monkeypatch) as disk:
        out = disk.path / "scores"
        disk.fill()
        capsys.readouterr()
        assert score_main([*argv, f"out={out}"]) == 2
        line = _one_error(capsys.readouterr().err)
        assert line.startswith(f"error: {out}: no space left on the device"), line
        assert ("0 B free of 1.0 MB" if disk.tmpfs else " free of ") in line, line
        assert line.endswith("free space and run the same command again"), line
        assert not [p for p in out.rglob("*") if p.is_file()]  # nothing half-written left
        disk.free()
        assert score_main([*argv, f"out={out}"]) == 0
        assert (out / "scores.csv").read_text().count("\n") == 7  # a header and the 6 frames


def _read_only(run: Path, where: Path, monkeypatch) -> tuple[Path, str]:
    """``run`` on a read-only disk: a read-only bind mount at ``where``, else EROFS injected."""
    where.mkdir()
    forced = os.environ.get("VLMRM_TEST_INJECT_DISK_FAULTS")
    problem = "VLMRM_TEST_INJECT_DISK_FAULTS is set" if forced else _mount("--bind", str(run), str(where))
    if problem is None:
        problem = _mount("-o", "remount,ro,bind", str(where))
        if problem is None:
            return where, "a read-only bind mount"
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
        if writes and os.path.abspath(os.fsdecode(path)).startswith(str(run) + os.sep):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    return run, f"injected EROFS ({problem})"


def test_resume_on_a_read_only_disk_fails_at_once(tmp_path, capsys, monkeypatch):
    from vlmrm.agents import runner
    from vlmrm.train import main as train_main

    assert train_main([*GT, "total_steps=100", f"out={tmp_path}", "run_name=r"]) == 0
    ro, method = _read_only(tmp_path / "r", tmp_path / "ro", monkeypatch)
    try:

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
        print(f"read-only disk: {method} at {ro}")
        if ro != tmp_path / "r":
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


def test_a_full_disk_under_label_sheets_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    from vlmrm.label.cli import main as label_main
    from vlmrm.video import write_video

    video = tmp_path / "v.mp4"
    write_video(video, np.random.default_rng(1).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8), fps=4)
    with full_disk(tmp_path / "disk", 512, monkeypatch) as disk:
        out = disk.path / "sheets"
        disk.fill()
        capsys.readouterr()
        assert label_main([str(video), f"out={out}", "progress=false"]) == 2
        line = _one_error(capsys.readouterr().err)
        assert line.startswith(f"error: {out}: no space left on the device (") and " free of " in line
        assert line.endswith("files written before are intact; free space and run the same command again"), line
        assert [p.name for p in disk.path.iterdir() if p.name not in disk.extra()] == []  # nor a lock file
        disk.free()
        assert label_main([str(video), f"out={out}", "progress=false"]) == 0
        assert (out / "labels.csv").read_text().count("\n") == 5


def test_a_writer_threads_storage_error_is_left_to_the_run(tmp_path, monkeypatch):
    """TensorBoard's writer thread dies on a full disk; its error reaches the run's own thread."""
    import threading

    from vlmrm.runtime.lock import RunLock

    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))

    def fails(exc: BaseException) -> None:
        thread = threading.Thread(target=lambda: (_ for _ in ()).throw(exc))
        thread.start()
        thread.join()

    with RunLock(tmp_path):
        fails(OSError(errno.ENOSPC, "No space left on device"))  # quiet: the run reports it once
        fails(ValueError("a bug"))  # anything else is printed as before
    assert seen == [ValueError]


def test_a_video_on_a_full_disk_is_named_as_a_full_disk(tmp_path):
    """ffmpeg, out of space, only shows Python a broken pipe: the full disk under it is named."""
    from vlmrm.runtime.atomic import atomic_write
    from vlmrm.video import write_video

    if os.environ.get("VLMRM_TEST_INJECT_DISK_FAULTS"):
        pytest.skip("ffmpeg writes outside Python: only a real full disk (tmpfs) shows this")
    frames = np.random.default_rng(0).integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)
    with full_disk(tmp_path / "disk", 256) as disk:
        if not disk.tmpfs:
            pytest.skip("ffmpeg writes outside Python: only a real full disk (tmpfs) shows this")
        disk.fill()
        with pytest.raises(OSError) as caught:
            atomic_write(disk.path / "v.mp4", lambda tmp: write_video(tmp, frames, fps=10))
        line = storage_error_line(caught.value)
        assert line is not None and line.startswith(f"{disk.path}: no space left on the device (writing v.mp4; 0 B free")
        assert disk.extra() == ["filler"] and sorted(p.name for p in disk.path.iterdir()) == ["filler"]
