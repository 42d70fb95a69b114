"""Fault injection: SIGKILL at every step of a checkpoint save; damaged checkpoint files.

The kill points are enumerated by ``tests/_kill_saves.py`` (one forked copy of the
training process per point, killed with SIGKILL); each copy is resumed and its replay
buffer checked against the uninterrupted run — on the ground-truth reward at every point,
and on the CLIP reward with episode relabelling at the points around each publish.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmrm.agents import checkpoint
from vlmrm.agents.checkpoint import NoCheckpoint, latest_checkpoint, verify_checkpoint
from vlmrm.errors import ConfigError
from vlmrm.evaluate import main as evaluate_main
from vlmrm.train import main as train_main

HERE = Path(__file__).resolve().parent
SAVES = (40, 80, 120)  # periodic at 40 and 80, final at 120; keep_checkpoints=2
QUIET = ["progress=false"]


@pytest.fixture(scope="module")
def kill_cases(tmp_path_factory):
    work = tmp_path_factory.mktemp("kills")
    res = subprocess.run([sys.executable, str(HERE / "_kill_saves.py"), str(work)], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    golden = rows.pop()
    return rows, golden


def test_every_kill_point_of_a_save_resumes_with_an_exact_buffer(kill_cases):
    rows, golden = kill_cases
    assert golden == {"golden": 120}
    steps = [r["save_step"] for r in rows]
    assert sorted(set(steps)) == list(SAVES)
    # Every file-system step of every save was a kill point: each save has the same 11
    # (flush agent, buffer, state; manifest: flush, rename, flush folder; rename the
    # folder, flush checkpoints/; latest.json: flush, rename, flush checkpoints/), and
    # the last one prunes the oldest checkpoint (keep_checkpoints=2): rename aside, delete.
    assert [steps.count(s) for s in SAVES] == [11, 11, 13], [(r["save_step"], r["what"]) for r in rows]
    previous = {40: 0, 80: 40, 120: 80}
    for r in rows:
        where = f"killed at save {r['save_step']} before {r['what']}"
        assert r["final_step"] == 140 and r["buffer_rows"] == 140, where  # as many transitions as steps
        assert r["prefix_ok"], where  # the first transitions are those of the uninterrupted run
        assert r["chain_ok"], where  # after the resume point, no transition lost or repeated
        assert r["warnings"] == [], where  # a published checkpoint is always complete
        published = r["k"] > _rename_index(rows, r["save_step"])
        assert r["resumed_from"] == (r["save_step"] if published else previous[r["save_step"]]), where


@pytest.fixture(scope="module")
def clip_kill_cases(tmp_path_factory):
    """The kill points that decide where a resume starts, with the CLIP reward relabelled per episode."""
    work = tmp_path_factory.mktemp("clip-kills")
    res = subprocess.run([sys.executable, str(HERE / "_kill_saves.py"), str(work), "tiny"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return rows[:-1], rows[-1]


def test_kills_around_a_save_neither_lose_nor_rescore_pending_clip_frames(clip_kill_cases):
    """Episode relabelling keeps frames pending until a rollout ends; every save flushes them
    first. Killed right before or right after a checkpoint is published, the resumed run
    must hold each transition once with its CLIP reward: no NaN placeholder left (a frame
    lost), every transition scored once (the relabeller's count equals the rows), the
    checkpointed rewards unchanged, and the whole buffer equal to the run without the kill."""
    rows, golden = clip_kill_cases
    assert golden == {"golden": 120}
    points = [(r["save_step"], r["what"].split()[0], r["resumed_from"]) for r in rows]
    # before the folder's rename the previous checkpoint is the newest; right after it, this one
    assert points == [(80, "replace", 40), (80, "fsync_dir", 80), (120, "replace", 80), (120, "fsync_dir", 120)]
    for r in rows:
        where = f"killed at save {r['save_step']} before {r['what']}"
        assert r["final_step"] == 140 and r["buffer_rows"] == 140 and r["warnings"] == [], where
        assert r["no_placeholder"] and r["relabelled"] == 140, where
        assert r["prefix_ok"] and r["chain_ok"], where
        assert r["same_as_whole_save"], where
        assert 0.3 < r["reward_mean"] < 0.7, where  # CLIP rewards, not CartPole's +1 per step


def _rename_index(rows, step):
    """The kill point of a save at which its folder is renamed into place."""
    return next(r["k"] for r in rows if r["save_step"] == step and r["what"].startswith("replace")
                and r["what"].endswith(".partial"))


# -- damaged checkpoint files ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CartPole DQN run with checkpoints at 40, 80 and the final one at 100."""
    out = tmp_path_factory.mktemp("run")
    argv = ["env=CartPole", "reward=ground_truth", "total_steps=100", "checkpoint_every=40", "keep_checkpoints=0",
            "n_envs=1", "agent.learning_starts=20", "agent.train_freq=10", "eval.episodes=0",
            f"out={out}", "run_name=run"] + QUIET
    assert train_main(argv) == 0
    return out / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


DAMAGES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: max(p.stat().st_size // 2, 1)]),
    "empty": lambda p: p.write_bytes(b""),
    "wrong-format": lambda p: p.write_bytes(b"this is not the file you are looking for\n" * 4),
    "missing": lambda p: p.unlink(),
}
FILES = ("agent.zip", "replay_buffer.pkl", "state.pkl", "manifest.json")


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("file", FILES)
def test_damaged_newest_checkpoint_is_skipped_with_one_line(trained, tmp_path, file, damage):
    run = _copy(trained, tmp_path)
    DAMAGES[damage](run / "checkpoints" / "step_000000100" / file)
    lines: list[str] = []
    ckpt = latest_checkpoint(run, warn=lines.append)
    assert ckpt.step == 80 and len(lines) == 1 and "step_000000100" in lines[0] and file in lines[0], lines
    with pytest.raises(ConfigError, match=f"step_000000100: {file}|step_000000100: manifest"):
        verify_checkpoint(run / "checkpoints" / "step_000000100")


def test_resume_falls_back_and_evaluate_names_the_damage(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    DAMAGES["truncated"](run / "checkpoints" / "step_000000100" / "replay_buffer.pkl")
    assert train_main([f"resume={run}", "total_steps=120"] + QUIET) == 0
    err = capsys.readouterr().err
    assert "skipping damaged checkpoint step_000000100: replay_buffer.pkl has" in err
    assert "resuming from checkpoints/step_000000080 at step 80" in err and "Traceback" not in err
    assert latest_checkpoint(run).step == 120
    # evaluate of the damaged step: one line, exit 2
    DAMAGES["wrong-format"](run / "checkpoints" / "step_000000080" / "agent.zip")
    assert evaluate_main([f"run={run}", "checkpoint=80", "episodes=1", "video=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[-1]] and err[-1].startswith("error: step_000000080: agent.zip has"), err


@pytest.mark.parametrize("damage", ["truncated", "wrong-format", "empty"])
def test_a_damaged_agent_file_given_by_path_is_one_line(trained, tmp_path, capsys, damage):
    agent = tmp_path / "agent.zip"
    agent.write_bytes((trained / "checkpoints" / "step_000000100" / "agent.zip").read_bytes())
    DAMAGES[damage](agent)
    assert evaluate_main([f"run={trained}", f"checkpoint={agent}", "episodes=1", "video=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot load {agent} as an SB3 DQN agent"), err


def test_every_checkpoint_damaged_is_one_line_and_nothing_is_started(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    for d in (run / "checkpoints").glob("step_*"):
        DAMAGES["truncated"](d / "agent.zip")
    assert train_main([f"resume={run}", "total_steps=120"] + QUIET) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {run}: every checkpoint is damaged") and "delete checkpoints/" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_000000040", "step_000000080", "step_000000100"]  # nothing deleted


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_run_config_and_latest_pointer(trained, tmp_path, capsys, damage):
    run = _copy(trained, tmp_path)
    DAMAGES[damage](run / "checkpoints" / "latest.json")  # only a pointer: resume does not need it
    assert latest_checkpoint(run).step == 100
    DAMAGES[damage](run / "config.yaml")
    assert train_main([f"resume={run}", "total_steps=120"] + QUIET) == 2
    assert evaluate_main([f"run={run}", "episodes=1", "video=false"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 2 and all("config.yaml" in line for line in err), err


def test_truncated_replay_buffer_file_is_one_line(trained, tmp_path):
    path = tmp_path / "buffer.pkl"
    path.write_bytes((trained / "checkpoints" / "step_000000100" / "replay_buffer.pkl").read_bytes()[:100])
    with pytest.raises(ConfigError, match="cannot read the replay buffer .* damaged"):
        checkpoint.load_replay_buffer(path)
    with pytest.raises(ConfigError, match="is missing"):
        checkpoint.load_replay_buffer(tmp_path / "nope.pkl")


def test_resume_of_a_run_killed_in_its_first_save_starts_over(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    import shutil

    for d in (run / "checkpoints").glob("step_*"):
        shutil.rmtree(d)
    (run / "checkpoints" / "step_000000040.partial").mkdir()  # what a kill before the rename leaves
    with pytest.raises(NoCheckpoint):
        latest_checkpoint(run)
    assert train_main([f"resume={run}", "total_steps=60"] + QUIET) == 0
    assert "has no checkpoint yet" in capsys.readouterr().err
    assert latest_checkpoint(run).step == 60 and not (run / "checkpoints" / "step_000000040.partial").exists()


def test_out_under_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["env=CartPole", "reward=ground_truth", "total_steps=10", f"out={blocker}/runs"] + QUIET
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: out='{blocker}/runs' is under '{blocker}', which is a file, not a folder; "
                       "pass out=<a folder path>")
    assert not any("Traceback" in line for line in err)


def test_replacing_a_checkpoint_of_the_same_step_survives_every_kill(tmp_path, monkeypatch):
    """A final save at the step of a periodic one replaces it: old or new, never neither or a mix."""
    import os
    import shutil
    import signal

    from _kill_saves import _arm

    from vlmrm.runtime.units import newest_unit, write_unit

    def writers(tag: str):
        return {f: (lambda p, f=f: p.write_text(f"{tag}:{f}")) for f in ("a.bin", "b.bin")}

    root = tmp_path / "base" / "checkpoints"
    write_unit(root, "step_000000005", writers("old"), {"step": 5})
    monkeypatch.setenv("KILL_LOG", str(tmp_path / "kill.log"))
    seen, k = set(), 0
    while True:
        case = tmp_path / f"k{k}"
        pid = os.fork()
        if pid == 0:
            shutil.copytree(tmp_path / "base", case)
            _arm(k)
            write_unit(case / "checkpoints", "step_000000005", writers("new"), {"step": 5})
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            assert os.WEXITSTATUS(status) == 3
            break
        lines: list[str] = []
        path, manifest = newest_unit(case / "checkpoints", lines.append)
        texts = {(path / f).read_text() for f in ("a.bin", "b.bin")}
        assert lines == [] and manifest["step"] == 5 and texts in ({"old:a.bin", "old:b.bin"}, {"new:a.bin", "new:b.bin"})
        write_unit(case / "checkpoints", "step_000000006", writers("next"), {"step": 6})  # the next save cleans up
        assert sorted(p.name for p in (case / "checkpoints").iterdir()) == ["step_000000005", "step_000000006"]
        seen.add(next(iter(texts))[:3])
        k += 1
    assert k >= 10 and seen == {"old", "new"}


def test_a_run_saved_before_checkpoint_folders_still_resumes(trained, tmp_path, capsys):
    """Older runs: checkpoints/step_<N>.zip, replay_buffer.pkl and latest.json side by side."""
    import json
    import shutil

    run = _copy(trained, tmp_path)
    ckpt = run / "checkpoints"
    unit = ckpt / "step_000000100"
    shutil.copyfile(unit / "agent.zip", ckpt / "step_000000100.zip")
    shutil.copyfile(unit / "replay_buffer.pkl", ckpt / "replay_buffer.pkl")
    for d in ckpt.glob("step_*"):
        if d.is_dir():
            shutil.rmtree(d)
    (ckpt / "latest.json").write_text(json.dumps(
        {"step": 100, "model": "step_000000100.zip", "replay_buffer": "replay_buffer.pkl", "reason": "final"}))
    old = latest_checkpoint(run)
    assert old.legacy and old.step == 100 and old.agent_path == ckpt / "step_000000100.zip"
    assert train_main([f"resume={run}", "total_steps=120"] + QUIET) == 0
    assert "resuming from checkpoints/step_000000100.zip at step 100" in capsys.readouterr().err
    new = latest_checkpoint(run)
    assert not new.legacy and new.step == 120
    assert checkpoint.load_replay_buffer(new.replay_buffer_path).pos == 120


def test_sigterm_stops_a_command_like_ctrl_c(tmp_path):
    """A scheduler's SIGTERM: exit 130, the closing line last, and the same command resumes."""
    import os
    import signal
    import time

    from _tta import TINY, make_class_folders

    data = make_class_folders(tmp_path / "classes")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vlmrm.tta", "task=classify", f"data={data}", *TINY, "steps=6", f"out={out}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not ((out / "results.jsonl").is_file() and (out / "results.jsonl").stat().st_size):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in log, log
    assert log.strip().splitlines()[-1] == (
        f"interrupted; finished samples are saved in {out} — run the same command to resume")
    done = len((out / "results.jsonl").read_text().splitlines())
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and f"{done} done, {9 - done} to go" in res.stderr, res.stderr
