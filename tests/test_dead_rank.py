"""A rank of a ``torchrun ... reward.distributed=true`` training killed with SIGKILL: rank 0 says
which rank stopped, what was kept and how to resume, in one line and without a traceback of
ours (torchrun's own summary follows); one process then resumes the run."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _torchrun import alive, left_behind, needs_proc, torchrun

from vlmrm.agents import latest_checkpoint
from vlmrm.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
ARGS = ["env=CartPole", "reward=tiny", "n_envs=2", "env.render_size=[64,64]", "agent.learning_starts=50",
        "agent.train_freq=10", "agent.gradient_steps=2", "eval.episodes=0", "progress=false",
        "reward.device=cpu", "device=cpu", "reward.relabel=step", "checkpoint_every=100"]


def _rank_pid(marker: str, rank: int) -> int | None:
    """The worker of ``rank`` among the processes whose command line holds ``marker``."""
    for pid in alive(marker):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID" in b"".join(environ):
            return pid
    return None


@pytest.mark.slow
@needs_proc
def test_a_killed_rank_is_named_in_one_line_and_the_run_resumes(tmp_path):
    import os
    import signal

    run = tmp_path / "run"
    proc = torchrun("-m", "vlmrm.train", *ARGS, "total_steps=1000000", "reward.distributed=true",
                    f"out={tmp_path}", "run_name=run", cwd=REPO, text=True)
    marker = str(tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "latest.json").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.1)
        victim = _rank_pid(marker, 1)
        assert victim is not None, "rank 1's process was not found in /proc"
        os.kill(victim, signal.SIGKILL)
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0, log
    assert left_behind(marker) == [], log
    kept = latest_checkpoint(run)
    errors = [ln for ln in log.splitlines() if "error:" in ln]
    assert errors == [
        f"error: rank 1 stopped (SIGKILL or crash); the checkpoint of step {kept.step} is intact; "
        f"resume with: python -m vlmrm.train resume={run}"
    ], log
    # tracebacks may only be torchrun's own (its ChildFailedError summary): no frame of ours
    assert not re.search(r'File "[^"]*/(vlmrm|agents)/', log), log
    assert "Connection reset" not in log and "Connection closed" not in log, log
    assert train_main([f"resume={run}", f"total_steps={kept.step + 100}"]) == 0
    assert latest_checkpoint(run).step == kept.step + 100


@pytest.mark.parametrize("peer", ["gone", "alive"])
def test_a_signal_that_stops_rank_0_after_a_peer_died_names_the_peer(tmp_path, peer):
    """torchrun stops the survivors of a dead rank with SIGTERM. When that signal reaches rank 0
    before one of its collectives fails, releasing the others is what finds the peer gone: the
    run ends with the lost rank's line and what was kept, not with "interrupted". With every
    peer alive the interrupt goes on as it was."""
    from vlmrm.agents.config import compose_train_config
    from vlmrm.agents.runner import train
    from vlmrm.distributed import RankLost

    calls = {"n": 0}

    class SignalledReward:
        """The reward model, until the signal arrives in the middle of step 150."""

        def __init__(self, reward):
            self.reward = reward

        def __call__(self, frames):
            calls["n"] += 1
            if calls["n"] == 150:
                raise KeyboardInterrupt
            return self.reward(frames)

        def __getattr__(self, name):
            return getattr(self.reward, name)

    def release() -> None:
        if peer == "gone":
            raise RankLost("rank 1 stopped (SIGKILL or crash)")

    run = tmp_path / "run"
    cfg = compose_train_config([*ARGS, "total_steps=1000", f"out={tmp_path}", "run_name=run"])
    try:  # (a KeyboardInterrupt that escaped pytest.raises would end the whole session)
        train(cfg, [], wrap_reward=SignalledReward, on_interrupt=release)
    except BaseException as exc:  # noqa: BLE001 - the type is the assertion
        raised = exc
    else:
        raised = None
    assert type(raised) is (RankLost if peer == "gone" else KeyboardInterrupt), repr(raised)
    if peer == "gone":
        kept = latest_checkpoint(run)
        assert kept is not None and kept.step == 200
        assert str(raised) == (
            f"rank 1 stopped (SIGKILL or crash); the checkpoint of step {kept.step} is intact; "
            f"resume with: python -m vlmrm.train resume={run}"
        )
