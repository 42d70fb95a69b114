"""One writer per run folder: a second ``train``/``resume=`` (and a second tune, finetune, tta,
caption.train or label sheets into the same folder) is refused at once with one line naming
the holder; a SIGKILLed holder leaves no stale lock."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vlmrm.runtime import lock as lock_mod
from vlmrm.runtime.lock import RunInUse, RunLock

REPO = Path(__file__).resolve().parents[1]
#: A ground-truth CartPole DQN run: no model to load, a few hundred steps a second.
GT = ["env=CartPole", "reward=ground_truth", "n_envs=1", "subprocess=false", "checkpoint_every=100",
      "agent.learning_starts=20", "agent.train_freq=10", "agent.gradient_steps=1", "agent.buffer_size=1000",
      "agent.target_update_interval=100", "eval.episodes=0", "progress=false", "threads=1"]
#: Waits on a start file (with its imports done), then runs ``python -m vlmrm.train ARGS``:
#: two of them released by one file start training as close together as two processes can.
AT_THE_SIGNAL = """
import os, sys, time
from vlmrm.train import main
import vlmrm.agents.runner  # the heavy imports, before the start signal
start = sys.argv[1]
open(f"{start}.{os.getpid()}.ready", "w").close()
deadline = time.monotonic() + 300
while not os.path.exists(start):
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.002)
sys.exit(main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))


def _train(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vlmrm.train", *args], cwd=REPO, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` (every 0.05 s, at most ``timeout`` s); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended ({proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _holder_pid(run: Path) -> int | None:
    try:
        return json.loads((run / ".lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None


def _in_use_line(err: str, pid: int) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and f"is in use by PID {pid} on {socket.gethostname()} since " in lines[0]
    assert lines[0].endswith("wait for it or stop it"), lines[0]


# -- training ------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_trainings_started_together_into_one_run_name_one_refuses(tmp_path):
    start = tmp_path / "start"
    args = [*GT, "total_steps=1000000", f"out={tmp_path}", "run_name=same"]
    procs = [subprocess.Popen([sys.executable, "-c", AT_THE_SIGNAL, str(start), *args], cwd=REPO, env=_env(),
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        _wait_for(lambda: len(list(tmp_path.glob("start.*.ready"))) == 2, 240, "both processes to be ready")
        start.touch()  # both go
        _wait_for(lambda: any(p.poll() is not None for p in procs), 240, "one of the two to give way")
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        err = loser.communicate()[1]
        assert loser.returncode == 2, err
        _in_use_line(err, winner.pid)
        assert winner.poll() is None  # the other trains on, alone
        run = tmp_path / "same"
        _wait_for(lambda: (run / "checkpoints" / "latest.json").exists(), 240, "the winner's first checkpoint", winner)
        winner.send_signal(signal.SIGINT)
        _, err = winner.communicate(timeout=120)
        assert winner.returncode == 130 and "SIGINT: stopped at step" in err, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert len((run / "command.txt").read_text().splitlines()) == 1  # one writer wrote the run
    assert len(list((run / "tb").rglob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_a_second_resume_is_refused_before_loading_and_a_killed_holder_leaves_no_lock(tmp_path, capsys):
    from vlmrm.train import main as train_main

    run = tmp_path / "run"
    assert train_main([*GT, "total_steps=200", f"out={tmp_path}", "run_name=run"]) == 0
    holder = _train(f"resume={run}", "total_steps=1000000", "checkpoint_every=100")
    try:
        _wait_for(lambda: _holder_pid(run) == holder.pid, 240, "the resumed run to hold the lock", holder)
        second = _train(f"resume={run}", "total_steps=1000000")
        err = second.communicate(timeout=240)[1]
        assert second.returncode == 2, err
        _in_use_line(err, holder.pid)
        assert "resume=" in err  # the holder's command line is named
        assert "resuming from" not in err  # refused before the checkpoint and env were loaded
        # SIGKILL: no chance to clean up; the OS drops the lock with the process
        _wait_for(lambda: len(list((run / "checkpoints").glob("step_*"))) >= 2, 240, "a checkpoint", holder)
        holder.kill()
        holder.communicate(timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
    with RunLock(run):  # free at once
        pass
    from vlmrm.agents import latest_checkpoint

    step = latest_checkpoint(run).step
    capsys.readouterr()
    assert train_main([f"resume={run}", f"total_steps={step + 100}"]) == 0
    assert f"resuming from checkpoints/step_{step:09d}" in capsys.readouterr().err
    assert latest_checkpoint(run).step == step + 100


def test_a_resume_of_a_locked_run_is_refused_in_process(tmp_path, capsys):
    from vlmrm.train import main as train_main

    assert train_main([*GT, "total_steps=100", f"out={tmp_path}", "run_name=r"]) == 0
    capsys.readouterr()
    with RunLock(tmp_path / "r", "python -m vlmrm.train holder"):
        assert train_main([f"resume={tmp_path / 'r'}", "total_steps=200"]) == 2
        _in_use_line(capsys.readouterr().err, os.getpid())
        # a new run into the same run_name: the same line, not "already holds a run"
        assert train_main([*GT, "total_steps=100", f"out={tmp_path}", "run_name=r"]) == 2
        err = capsys.readouterr().err
        _in_use_line(err, os.getpid())
        assert "(python -m vlmrm.train holder)" in err
    assert train_main([f"resume={tmp_path / 'r'}", "total_steps=200"]) == 0  # released


# -- the other commands that write a resumable folder ---------------------------------------


def _refused(main, argv, folder: Path, capsys, beside: bool = False) -> None:
    lock_file = folder.with_name(f".{folder.name}.lock") if beside else None
    capsys.readouterr()
    with RunLock(folder, "a test holding the folder", lock_file=lock_file):
        assert main(argv) == 2
    _in_use_line(capsys.readouterr().err, os.getpid())


def test_tune_refuses_a_second_writer(tmp_path, capsys):
    import imageio.v3 as iio

    from vlmrm.tune.cli import main

    iio.imwrite(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "ranked.jsonl").write_text(json.dumps({"image": "a.png", "captions": ["a", "b"]}) + "\n")
    _refused(main, [f"data={tmp_path / 'ranked.jsonl'}", "model=vlmrm-tiny", f"out={tmp_path / 'o'}"],
             tmp_path / "o", capsys)


def test_finetune_refuses_a_second_writer(tmp_path, capsys):
    from _captions import shapes_dataset

    from vlmrm.tune.finetune import main

    data = shapes_dataset(tmp_path / "shapes")
    _refused(main, [f"data={data}", "model=vlmrm-tiny", f"out={tmp_path / 'o'}"], tmp_path / "o", capsys)


def test_caption_train_refuses_a_second_writer(tmp_path, capsys):
    from _caption import caption_set, save_tiny_lm

    from vlmrm.caption.train import main

    ann, images = caption_set(tmp_path, n=2, split="train")
    lm = save_tiny_lm(tmp_path / "lm")
    _refused(main, [f"data={ann}", f"images={images}", f"lm={lm}", "tokenizer=clip", "model=vlmrm-tiny",
                    f"out={tmp_path / 'o'}"], tmp_path / "o", capsys)


def test_tta_refuses_a_second_writer(tmp_path, capsys):
    from _tta import TINY, make_class_folders

    from vlmrm.tta.cli import main

    data = make_class_folders(tmp_path / "cls", per_class=1)
    _refused(main, ["task=classify", f"data={data}", f"out={tmp_path / 'o'}", *TINY], tmp_path / "o", capsys)


def test_label_sheets_refuse_a_second_writer(tmp_path, capsys):
    from vlmrm.label.cli import main
    from vlmrm.video import write_video

    write_video(tmp_path / "v.mp4", np.zeros((3, 32, 32, 3), np.uint8), fps=10)
    out = tmp_path / "sheets"
    _refused(main, [str(tmp_path / "v.mp4"), f"out={out}", "progress=false"], out, capsys, beside=True)
    assert not out.exists()
    assert main([str(tmp_path / "v.mp4"), f"out={out}", "progress=false"]) == 0  # released
    assert (out / "labels.csv").is_file()


# -- the lock itself -----------------------------------------------------------------------


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """Data-loader workers and the closing-line waiter are forks: they must not hold a run's lock."""
    lock = RunLock(tmp_path).acquire()
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child (its fork hooks have run) lives on after its parent let go
        os.write(ready_w, b"r")
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"r"
        os.close(ready_r)
        lock.release()
        with RunLock(tmp_path):  # free although the child still runs
            pass
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)


def test_a_finished_run_removes_its_lock_file_and_a_killed_one_leaves_it_unlocked(tmp_path):
    with RunLock(tmp_path, "python -m vlmrm.train x") as held:
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid() and held.locked
    assert not (tmp_path / ".lock").exists()
    killed = subprocess.run([sys.executable, "-c", "import os, signal, sys; from vlmrm.runtime.lock import RunLock; "
                             f"RunLock({str(tmp_path)!r}).acquire(); os.kill(os.getpid(), signal.SIGKILL)"])
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / ".lock").exists()  # left behind by the killed holder, but not locked:
    with RunLock(tmp_path):
        pass


def test_the_same_folder_twice_in_one_process_is_refused(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunInUse, match=f"PID {os.getpid()}"):
        RunLock(tmp_path).acquire()


def test_a_filesystem_without_locks_warns_once_and_goes_on(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    monkeypatch.setattr(lock_mod, "_warned", False)
    with RunLock(tmp_path / "a") as a, RunLock(tmp_path / "b"):
        assert not a.locked
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "cannot lock files" in err and str(tmp_path / "a") in err


def test_a_locked_resume_is_refused_before_torch_is_imported(tmp_path):
    from vlmrm.train import main as train_main

    assert train_main([*GT, "total_steps=100", f"out={tmp_path}", "run_name=r"]) == 0
    probe = (
        "import sys\n"
        "from vlmrm.train import main\n"
        f"rc = main(['resume={tmp_path / 'r'}', 'total_steps=200'])\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    with RunLock(tmp_path / "r", "python -m vlmrm.train holder"):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    _in_use_line(done.stderr, os.getpid())
    assert "torch imported: False" in done.stdout
