"""``torchrun -m vlmrm.train reward.distributed=true``: two gloo processes on the CPU score the same
rewards as one, Ctrl-C saves rank 0's checkpoint and leaves no process, and one process resumes the run."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from _runs import tb_scalars
from _torchrun import alive, ctrl_c, left_behind, needs_proc, torchrun

from vlmrm.agents import latest_checkpoint, load_replay_buffer
from vlmrm.runtime.stop import GracefulStop
from vlmrm.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
#: The agent learns (from step 50, on the served rewards) but always explores (ε = 1), so the
#: frames of a run depend on the seed alone and runs can be compared frame by frame; CLIP in
#: fp32 on the CPU (on a GPU, fp16 results may depend on how a batch is split).
RANDOM_AGENT = ["env=CartPole", "reward=tiny", "n_envs=2", "env.render_size=[64,64]", "agent.learning_starts=50",
                "agent.train_freq=10", "agent.gradient_steps=2", "agent.exploration_initial_eps=1.0",
                "agent.exploration_final_eps=1.0", "eval.episodes=0", "progress=false", "reward.device=cpu",
                "device=cpu"]


def _scored(log: str, rank: int) -> int:
    match = re.search(rf"rank {rank} scored (\d+) frames", log)
    assert match, log
    return int(match.group(1))


def _buffer(run: Path):
    ckpt = latest_checkpoint(run)
    return ckpt, load_replay_buffer(ckpt.replay_buffer_path)


def _same_rewards(two: Path, one: Path, steps: int) -> None:
    """The first ``steps`` transitions: the same frames (observations), rewards within float tolerance."""
    _, a = _buffer(two)
    _, b = _buffer(one)
    n = steps // 2
    assert a.pos >= n and b.pos >= n
    np.testing.assert_array_equal(a.observations[:n], b.observations[:n])
    ra, rb = a.rewards[:n], b.rewards[:n]
    assert np.isfinite(ra).all() and np.ptp(rb) > 1e-4  # relabelled everywhere, and not one constant
    np.testing.assert_allclose(ra, rb, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> tuple[Path, str]:
    """300 steps with episode relabelling, the reward spread over 2 gloo processes."""
    out = tmp_path_factory.mktemp("dist")
    job = torchrun("-m", "vlmrm.train", *RANDOM_AGENT, "total_steps=300", "reward.distributed=true",
                   f"out={out}", "run_name=two", cwd=REPO, text=True)
    log = job.finish(timeout=300)
    assert job.returncode == 0, log
    return out / "two", log


@pytest.mark.slow
def test_two_processes_relabel_like_one(two_process_run, tmp_path):
    run, log = two_process_run
    assert "each scoring batch split over 2 ranks" in log
    assert _scored(log, 1) > 100 and _scored(log, 0) > 100  # both ranks did score
    assert log.count("run directory:") == 1 and not (run.parent / "one").exists()  # rank 0 alone writes
    assert np.isfinite(tb_scalars(run)["train/loss"][-1][1])  # it trained on them
    assert train_main([*RANDOM_AGENT, "total_steps=300", f"out={tmp_path}", "run_name=one"]) == 0
    _same_rewards(run, tmp_path / "one", 300)


@pytest.mark.slow
def test_one_process_resumes_a_two_process_run(two_process_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "two"
    shutil.copytree(two_process_run[0], run)
    _, before = _buffer(run)
    assert train_main([f"resume={run}", "total_steps=360"]) == 0
    err = capsys.readouterr().err
    assert "without torchrun (or with one process): scoring in this process" in err
    assert "resuming from checkpoints/step_000000300 at step 300" in err
    ckpt, after = _buffer(run)
    assert ckpt.step == 360 and after.pos == 180
    np.testing.assert_array_equal(after.rewards[:150], before.rewards[:150])
    assert np.isfinite(after.rewards[:180]).all()


@pytest.mark.slow
@needs_proc
def test_ctrl_c_stops_every_rank_and_keeps_a_checkpoint(tmp_path):
    """Per-step scoring this time; SIGINT to the process group as a terminal's Ctrl-C sends it."""
    run = tmp_path / "run"
    job = torchrun("-m", "vlmrm.train", *RANDOM_AGENT, "total_steps=100000", "reward.relabel=step",
                   "checkpoint_every=100", "reward.distributed=true", f"out={tmp_path}", "run_name=run",
                   cwd=REPO, text=True)
    marker = str(tmp_path)  # in every process's command line
    latest = run / "checkpoints" / "latest.json"
    job.wait_for(latest.exists, f"the first checkpoint ({latest})", timeout=240)
    assert len(alive(marker)) >= 3  # torchrun + 2 workers
    stopped_at = time.monotonic()
    ctrl_c(job)
    log = job.finish(timeout=90)
    assert left_behind(marker) == [], log
    assert time.monotonic() - stopped_at < 30, log  # before torchrun's own 30 s deadline
    assert "SIGINT: stopped at step" in log and "aborting" not in log, log
    assert _scored(log, 1) > 0  # rank 1 served until rank 0 released it, then ended cleanly
    ckpt, buffer = _buffer(run)
    assert ckpt.manifest["reason"] == "interrupted (SIGINT)" and buffer.pos * 2 == ckpt.step
    # the per-step rewards are a one-process run's on the same frames
    one = tmp_path / "one"
    assert train_main([*RANDOM_AGENT, f"total_steps={ckpt.step}", "reward.relabel=step", f"out={tmp_path}",
                       "run_name=one"]) == 0
    _same_rewards(run, one, ckpt.step)


@pytest.mark.slow
def test_several_processes_need_reward_distributed(tmp_path):
    job = torchrun("-m", "vlmrm.train", *RANDOM_AGENT, "total_steps=10", f"out={tmp_path}", cwd=REPO, text=True)
    log = job.finish(timeout=240)
    assert job.returncode != 0, log
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "add reward.distributed=true" in errors[0], log  # once, from rank 0
    assert not list(tmp_path.iterdir())


def test_a_repeated_signal_within_the_echo_window_is_the_same_stop():
    """Under torchrun a Ctrl-C arrives twice (terminal + launcher): not an abort."""
    with GracefulStop(echo_s=5.0) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.name == "SIGINT"
    with pytest.raises(KeyboardInterrupt), GracefulStop(echo_s=0.0):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
