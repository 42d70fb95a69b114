"""Sweeps through submitit: local worker processes in parallel, pre-emption by SIGUSR2 and
requeue, and a SLURM job array against stand-in SLURM commands (CPU, ground truth or tiny CLIP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _slurm_stub import install
from omegaconf import OmegaConf

import vlmrm
from vlmrm.agents import latest_checkpoint
from vlmrm.agents.checkpoint import load_replay_buffer, verify_checkpoint

pytestmark = pytest.mark.slow  # worker processes each import torch and SB3

REPO = Path(__file__).resolve().parents[1]
FAST = ["n_envs=2", "eval.video=false", "progress=false"]


def _train(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vlmrm.train", "-m", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _finish(proc: subprocess.Popen, seconds: float = 420) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=seconds)
    finally:
        if proc.poll() is None:
            proc.kill()


def _poll(condition, what: str, seconds: float = 180.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (OSError, ValueError, KeyError):  # a file not written yet
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


def _doc(folder: Path) -> dict:
    return json.loads((folder / "sweep.json").read_text())


def test_submitit_local_runs_a_2x2_sweep_two_at_a_time(tmp_path, monkeypatch, capsys):
    from vlmrm.sweep import launchers
    from vlmrm.train import main as train_main

    monkeypatch.setattr(launchers, "cuda_devices", lambda: [0, 1])  # as on a machine with 2 GPUs
    assert train_main(["-m", "env=CartPole", "reward=ground_truth", "total_steps=32", "eval.episodes=1",
                       "checkpoint_every=0", *FAST, "seed=0,1", "reward.alpha=0,1", f"out={tmp_path}",
                       "run_name=grid", "launcher=submitit_local", "launcher.parallel=2"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "multirun" / "grid"
    doc = _doc(folder)
    assert doc["launcher"] == {"name": "submitit_local", "parallel": 2, "signal_delay_s": 120}
    assert doc["swept_keys"] == ["seed", "reward.alpha"] and len(doc["jobs"]) == 4
    for job in doc["jobs"]:
        assert job["state"] == "done" and job["requeues"] == 0 and job["error"] is None, job
        assert job["job_id"] and job["started"] < job["ended"] and job["result"]["steps"] == 32
        assert job["gpus"] in ("0", "1")  # one GPU each
        cfg = OmegaConf.load(folder / job["run_dir"] / "config.yaml")
        assert (cfg.seed, cfg.reward.alpha) == (int(job["swept"]["seed"]), float(job["swept"]["reward.alpha"]))
        run = vlmrm.load_run(folder / job["run_dir"])
        assert run.config.seed == cfg.seed and run.agent.num_timesteps == 32
        run.close()
    jobs = doc["jobs"]
    overlapping = [(a["index"], b["index"]) for a in jobs for b in jobs
                   if a["index"] < b["index"] and a["started"] < b["ended"] and b["started"] < a["ended"]]
    assert overlapping, [(j["started"], j["ended"]) for j in jobs]
    assert all(jobs[a]["gpus"] != jobs[b]["gpus"] for a, b in overlapping)  # never two on one GPU
    assert "4 jobs, 4 done" in out and len({j["pid"] for j in jobs}) == 4  # a worker process each


def test_sigusr2_under_submitit_local_requeues_and_finishes_like_an_uninterrupted_job(tmp_path):
    steps = 1200
    proc = _train("env=CartPole", "reward=ground_truth", f"total_steps={steps}", "checkpoint_every=100",
                  "keep_checkpoints=0", "eval.episodes=0", *FAST, "seed=0,1", f"out={tmp_path}", "run_name=pre",
                  "launcher=submitit_local", "launcher.parallel=2")
    folder = tmp_path / "multirun" / "pre"
    try:
        _poll(lambda: any((folder / "runs" / "000" / "checkpoints").glob("step_*")), "job 0's first checkpoint")
        pid = _doc(folder)["jobs"][0]["pid"]
        os.kill(pid, signal.SIGUSR2)
    finally:
        out, err = _finish(proc)
    assert proc.returncode == 0, err[-3000:]
    doc = _doc(folder)
    interrupted, plain = doc["jobs"]
    assert [j["state"] for j in doc["jobs"]] == ["done", "done"]
    assert interrupted["requeues"] == 1 and plain["requeues"] == 0 and interrupted["signal"] == "SIGUSR2"
    assert "job 0 (seed=0): preempted (requeued 1x)" in err
    run = folder / interrupted["run_dir"]
    reasons = {}
    for path in sorted((run / "checkpoints").glob("step_*")):
        ckpt = verify_checkpoint(path)
        reasons[ckpt.step] = ckpt.manifest["reason"]
    stops = [s for s, r in reasons.items() if r == "interrupted (SIGUSR2)"]
    assert len(stops) == 1 and 0 < stops[0] < steps, reasons
    log = "".join(p.read_text() for p in (folder / ".submitit").glob("*_0_log.err"))
    assert f"resuming from checkpoints/step_{stops[0]:09d} at step {stops[0]}" in log

    sizes = []
    for job in (interrupted, plain):
        last = latest_checkpoint(folder / job["run_dir"])
        assert last.step == steps and last.manifest["reason"] == "final" and job["result"]["steps"] == steps
        buffer = load_replay_buffer(last.replay_buffer_path)
        sizes.append(buffer.buffer_size if buffer.full else buffer.pos)
    assert sizes[0] == sizes[1] == steps // 2  # 2 envs: one row per vector step


def test_submitit_slurm_runs_a_job_array_through_sbatch(tmp_path):
    stub = install(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"}
    proc = _train("env=CartPole", "reward=ground_truth", "total_steps=32", "eval.episodes=1", "checkpoint_every=0",
                  *FAST, "seed=0,1", f"out={tmp_path}", "run_name=cluster", "launcher=submitit_slurm",
                  "launcher.parallel=1", "launcher.partition=gpu", "launcher.gpus_per_job=1", "launcher.time_min=30",
                  "launcher.signal_delay_s=90", "launcher.cpus_per_job=4", "launcher.mem_gb=16",
                  "launcher.account=lab", "launcher.qos=high", "launcher.extra.constraint=a100",
                  "launcher.setup=[echo from setup]", env=env)
    out, err = _finish(proc)
    assert proc.returncode == 0, err[-3000:]
    [script] = [p.read_text() for p in stub.glob("sbatch_*.sh")]
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=30",
                 "#SBATCH --array=0-1%1", "#SBATCH --signal=USR2@90", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=16GB", "#SBATCH --account=lab", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "echo from setup"):
        assert line in script.splitlines(), (line, script)
    doc = _doc(tmp_path / "multirun" / "cluster")
    array = script and doc["jobs"][0]["job_id"].split("_")[0]
    assert [(j["state"], j["job_id"]) for j in doc["jobs"]] == [("done", f"{array}_0"), ("done", f"{array}_1")]
    assert all(j["result"]["steps"] == 32 for j in doc["jobs"])
    jobs = doc["jobs"]
    assert jobs[0]["ended"] <= jobs[1]["started"]  # the array throttle %1: one after the other


def test_ctrl_c_stops_a_local_sweep_at_a_checkpoint_and_another_launcher_finishes_it(tmp_path, capsys):
    steps = 1200
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlmrm.train", "-m", "env=CartPole", "reward=ground_truth", f"total_steps={steps}",
         "checkpoint_every=100", "keep_checkpoints=0", "eval.episodes=0", *FAST, "seed=0", f"out={tmp_path}",
         "run_name=stop", "launcher=submitit_local", "launcher.parallel=1"],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    folder = tmp_path / "multirun" / "stop"
    try:
        _poll(lambda: any((folder / "runs" / "000" / "checkpoints").glob("step_*")), "the job's first checkpoint")
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    finally:
        out, err = _finish(proc)
    assert proc.returncode == 130, err[-3000:]
    assert f"continue with: python -m vlmrm.train -m resume={folder}" in err
    [job] = _doc(folder)["jobs"]
    stopped = latest_checkpoint(folder / job["run_dir"])
    assert job["state"] == "preempted" and job["signal"] == "SIGINT" and job["requeues"] == 0
    assert stopped.manifest["reason"] == "interrupted (SIGINT)" and 0 < stopped.step < steps

    from vlmrm.train import main as train_main

    assert train_main(["-m", f"resume={folder}", "launcher=basic"]) == 0  # started local, continued here
    err = capsys.readouterr().err
    assert f"resuming from checkpoints/step_{stopped.step:09d} at step {stopped.step}" in err
    doc = _doc(folder)
    [job] = doc["jobs"]
    assert doc["launcher"]["name"] == "basic" and job["state"] == "done" and job["result"]["steps"] == steps
    last = latest_checkpoint(folder / job["run_dir"])
    assert last.step == steps and last.manifest["reason"] == "final"
