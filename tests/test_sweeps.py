"""Sweeps (``-m``) of every long command: expansion, launcher keys, the sweep folder, failures
and resume, prompt sweeps, and SIGUSR2 on a plain run (CPU, ground truth or tiny CLIP)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from vlmrm.agents import latest_checkpoint
from vlmrm.cli import load_main
from vlmrm.sweep.expand import expand_sweep
from vlmrm.sweep.settings import split_sweep_args
from vlmrm.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
TEXT = frozenset({"goal", "baseline", "out", "run_name"})
FAST = ["n_envs=2", "eval.video=false", "progress=false", "checkpoint_every=0"]


def _sweep(out: Path) -> tuple[Path, dict]:
    [folder] = sorted((out / "multirun").iterdir())
    return folder, json.loads((folder / "sweep.json").read_text())


def _poll(condition, what: str, seconds: float = 120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


# -- expansion --------------------------------------------------------------------------------------


def test_quoted_values_sweep_free_text_and_an_unquoted_comma_stays_text():
    jobs = expand_sweep(["env=CartPole", "goal='a pole, upright','a cart moving left'", "seed=0,1"], TEXT)
    assert [j.swept for j in jobs] == [
        {"goal": "a pole, upright", "seed": "0"}, {"goal": "a pole, upright", "seed": "1"},
        {"goal": "a cart moving left", "seed": "0"}, {"goal": "a cart moving left", "seed": "1"},
    ]
    assert jobs[1].argv == ["env=CartPole", "goal='a pole, upright'", "seed=1"]
    [job] = expand_sweep(["goal=a pole, upright", "baseline='a pole, a cart'"], TEXT)  # no sweep
    assert job.swept == {} and job.argv == ["goal=a pole, upright", "baseline='a pole, a cart'"]


def test_goal_file_sweeps_each_line_and_a_yaml_list_is_one_job(tmp_path):
    prompts = tmp_path / "goals.txt"
    prompts.write_text("a humanoid robot kneeling\n\n[a robot sitting, \"a robot, seated\"]\nit's up, high\n")
    jobs = expand_sweep(["env=Humanoid", f"goal_file={prompts}"], TEXT)
    assert [j.swept["goal"] for j in jobs] == [
        "a humanoid robot kneeling", '[a robot sitting, "a robot, seated"]', "it's up, high"]
    from vlmrm.agents.config import resolve_config

    goals = [resolve_config([*j.argv, "reward=tiny"]).goal for j in jobs]
    assert goals[0] == "a humanoid robot kneeling" and goals[2] == "it's up, high"
    assert list(goals[1]) == ["a robot sitting", "a robot, seated"]  # averaged prompts


def test_old_import_path_is_the_same_expansion():
    from vlmrm.agents import sweep

    assert sweep.expand_sweep is expand_sweep


# -- launcher keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "tune", "tune.finetune", "tta", "caption.train"])
def test_every_sweepable_command_documents_the_launcher_keys(command, capsys):
    assert load_main({"train": "vlmrm.train", "tune": "vlmrm.tune.cli", "tune.finetune": "vlmrm.tune.finetune",
                      "tta": "vlmrm.tta.cli", "caption.train": "vlmrm.caption.train"}[command])(["--help"]) == 0
    text = capsys.readouterr().out
    for key in ("launcher=basic", "launcher.parallel=", "launcher.partition=", "launcher.time_min=",
                "launcher.gpus_per_job=", "launcher.setup=", "launcher.extra=", "launcher.signal_delay_s=120",
                "resume=<sweep folder>"):
        assert key in text, (command, key)


def test_launcher_keys_are_taken_out_and_typed():
    settings, name, rest = split_sweep_args(
        ["seed=0,1", "launcher=submitit_slurm", "launcher.parallel=3", "launcher.extra.constraint=a100",
         "launcher.setup=[module load cuda,echo hi]", "run_name=study1", "goal=x"])
    assert rest == ["seed=0,1", "goal=x"] and name == "study1"
    assert settings.name == "submitit_slurm" and settings.parallel == 3
    assert settings.extra == {"constraint": "a100"} and settings.setup == ["module load cuda", "echo hi"]


@pytest.mark.parametrize(("args", "expected"), [
    (["launcher=slurm"], "unknown launcher='slurm'; choose one of: basic, submitit_local, submitit_slurm"),
    (["launcher.partiton=gpu"], "unknown setting 'launcher.partiton' (did you mean 'launcher.partition'?)"),
    (["launcher.parallel=0"], "launcher.parallel=0: must be at least 1"),
    (["launcher=submitit_slurm"], "launcher=submitit_slurm needs a SLURM cluster (sbatch not found)"),
    (["launcher.parallel=2"], "launcher= and launcher.* are sweep settings: add -m"),  # without -m
])
def test_bad_launcher_settings_are_one_error_line(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no sbatch here
    flag = [] if args == ["launcher.parallel=2"] else ["-m"]
    assert train_main([*flag, "env=CartPole", "reward=ground_truth", "seed=0,1", f"out={tmp_path}", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "multirun").exists()


def test_other_commands_take_the_same_sweep_entry(tmp_path, capsys):
    """tune -m: expanded, placed in the sweep folder, each job's failure recorded, through the shared entry."""
    status = load_main("vlmrm.tune.cli")(["-m", "lr=1e-5,2e-5", f"data={tmp_path / 'missing.jsonl'}",
                                          f"out={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err[-1].startswith("error: 2 of 2 jobs failed: 0 (lr=1e-05), 1 (lr=2e-05)"), err
    folder, doc = _sweep(tmp_path)
    assert doc["command"] == "tune" and [j["swept"] for j in doc["jobs"]] == [{"lr": "1e-05"}, {"lr": "2e-05"}]
    for job in doc["jobs"]:
        assert job["state"] == "failed" and job["error"].startswith("error: data file ") and "missing.jsonl" in job["error"]
    ran = [ln for ln in err if ln.startswith("[vlmrm.sweep] job 1: python -m vlmrm.tune ")]
    assert ran and ran[0].endswith(f"out={folder.resolve() / 'runs' / '001'}")


# -- sweeps that run (basic launcher, in this process) -------------------------------------------


def test_prompt_sweep_runs_one_job_per_goal_with_its_exact_text(tmp_path, capsys):
    goals = ["a pole, upright on the cart", "the cart's pole fallen"]
    quoted = ",".join("'" + g.replace("'", "\\'") + "'" for g in goals)
    assert train_main(["-m", "env=CartPole", "reward=tiny", "total_steps=32", "eval.episodes=0", *FAST,
                       f"goal={quoted}", "baseline=a cart, a pole", f"out={tmp_path}", "run_name=prompts"]) == 0
    folder, doc = _sweep(tmp_path)
    assert folder.name == "prompts" and doc["swept_keys"] == ["goal"]
    assert [j["swept"]["goal"] for j in doc["jobs"]] == goals
    for job, goal in zip(doc["jobs"], goals, strict=True):
        cfg = OmegaConf.load(folder / job["run_dir"] / "config.yaml")
        assert job["state"] == "done" and cfg.goal == goal and cfg.baseline == "a cart, a pole"
        assert job["result"]["steps"] == 32 and latest_checkpoint(folder / job["run_dir"]).step == 32
    out = capsys.readouterr().out
    assert "2 jobs, 2 done" in out and goals[0] in out


def test_a_failing_job_is_marked_failed_the_others_run_and_resume_reruns_it(tmp_path, monkeypatch, capsys):
    mods = tmp_path / "mods"
    mods.mkdir()
    monkeypatch.syspath_prepend(str(mods))
    out = tmp_path / "out"
    argv = ["-m", "env=CartPole,sweep_test_envs:CartPole-v1,MountainCar", "reward=ground_truth",
            "total_steps=32", "eval.episodes=1", *FAST, f"out={out}"]
    assert train_main(argv) == 1
    err = capsys.readouterr().err
    folder, doc = _sweep(out)
    assert [j["state"] for j in doc["jobs"]] == ["done", "failed", "done"]
    bad = "error: env=sweep_test_envs:CartPole-v1: cannot import 'sweep_test_envs'"
    assert doc["jobs"][1]["error"].startswith(bad) and doc["jobs"][1]["result"] is None
    assert err.strip().splitlines()[-1].startswith("error: 1 of 3 jobs failed: 1 (env=sweep_test_envs:CartPole-v1)")
    assert all(j["result"]["steps"] == 32 for j in doc["jobs"][::2])
    # the sweep.json contract the study reads
    assert {"version", "command", "command_line", "argv", "name", "created", "launcher", "swept_keys",
            "jobs"} <= doc.keys()
    assert doc["version"] == 1 and doc["command"] == "train" and doc["swept_keys"] == ["env"]
    assert doc["command_line"].startswith("python -m vlmrm.train -m env=CartPole,sweep_test_envs")
    assert doc["launcher"]["name"] == "basic" and doc["argv"] == argv[1:]
    for job in doc["jobs"]:
        assert {"index", "swept", "argv", "run_dir", "state", "started", "ended", "job_id", "requeues", "error",
                "result"} <= job.keys()
        assert job["run_dir"] == f"runs/{job['index']:03d}" and job["requeues"] == 0
    final = doc["jobs"][0]["result"]["final_eval"]
    assert final.keys() >= {"gt_return", "clip_return", "success_rate"} and final["gt_return"] > 0

    # The cause is fixed (the module now exists): resume reruns job 1 alone.
    (mods / "sweep_test_envs.py").write_text('"""CartPole-v1 is registered by gymnasium itself."""\n')
    importlib.invalidate_caches()
    assert train_main(["-m", f"resume={folder}"]) == 0
    err = capsys.readouterr().err
    after = json.loads((folder / "sweep.json").read_text())
    assert "(1 job to run, launcher=basic)" in err
    assert [j["state"] for j in after["jobs"]] == ["done", "done", "done"]
    for i in (0, 2):  # the done jobs are kept as they were
        assert after["jobs"][i] == doc["jobs"][i]
        assert len((folder / doc["jobs"][i]["run_dir"] / "command.txt").read_text().splitlines()) == 1
    assert after["jobs"][1]["error"] is None and after["jobs"][1]["result"]["steps"] == 32
    assert OmegaConf.load(folder / "runs/001/config.yaml").env.id == "sweep_test_envs:CartPole-v1"
    assert len(after["resumed"]) == 1


def test_resume_takes_a_sweep_folder_and_only_launcher_keys(tmp_path, capsys):
    assert train_main(["-m", f"resume={tmp_path}"]) == 2  # no sweep.json there
    assert "takes a sweep folder" in capsys.readouterr().err
    folder = tmp_path / "multirun" / "s"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"command": "train", "launcher": {"name": "basic"}, "jobs": []}))
    assert train_main(["-m", f"resume={folder}", "seed=3"]) == 2
    assert "only launcher keys may change (got seed=3)" in capsys.readouterr().err
    assert load_main("vlmrm.tune.cli")(["-m", f"resume={folder}"]) == 2
    assert "resume it with python -m vlmrm.train -m resume=" in capsys.readouterr().err


# -- SIGUSR2 on a plain run ------------------------------------------------------------------------


@pytest.mark.slow
def test_sigusr2_saves_a_checkpoint_named_after_it_and_exits_130(tmp_path):
    run = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlmrm.train", "env=CartPole", "reward=ground_truth", "total_steps=200000",
         "checkpoint_every=200", "eval.episodes=0", *FAST[:2], "progress=false", f"out={tmp_path}", "run_name=r"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _poll(lambda: any((run / "checkpoints").glob("step_*")), "the first periodic checkpoint")
        proc.send_signal(signal.SIGUSR2)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    ckpt = latest_checkpoint(run)
    assert ckpt.manifest["reason"] == "interrupted (SIGUSR2)" and 0 < ckpt.step < 200000
    stopped = [ln for ln in err.splitlines() if "SIGUSR2" in ln]
    assert stopped == [f"[vlmrm.train] SIGUSR2: stopped at step {ckpt.step}, checkpoint saved; "
                       f"continue with: python -m vlmrm.train resume={run}"], stopped
    assert os.path.isfile(run / "config.yaml")


def test_sigusr1_and_sigusr2_are_graceful_stops_while_active():
    from vlmrm.runtime.stop import GracefulStop

    before = signal.getsignal(signal.SIGUSR1)
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        with GracefulStop() as stop:
            os.kill(os.getpid(), sig)
            _poll(lambda stop=stop: stop.requested, "the signal to be recorded", 5)
            assert stop.name == sig.name and GracefulStop.last == sig
    assert signal.getsignal(signal.SIGUSR1) == before  # restored when the stop ends


def test_a_tune_sweep_places_each_job_in_the_sweep_folder(tmp_path, capsys):
    """The same entry for vlmrm.tune: one out= folder per job under the sweep folder, all done."""
    from vlmrm.runtime.images import save_png

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    colours = ["red", "green", "blue", "white"]
    with open(tmp_path / "ranked.jsonl", "w") as fh:
        for k in range(8):
            save_png(tmp_path / "img" / f"{k}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
            ranked = [f"a {colours[k % 4]} square"] + [f"a {c} square" for c in colours if c != colours[k % 4]][:2]
            fh.write(json.dumps({"image": f"img/{k}.png", "captions": ranked}) + "\n")
    args = [f"data={tmp_path / 'ranked.jsonl'}", "model=vlmrm-tiny", "device=cpu", "steps=2", "batch_size=4",
            "warmup_steps=0", "tensorboard=false", "progress=false", "log_every=0", f"out={tmp_path / 'out'}"]
    assert load_main("vlmrm.tune.cli")(["-m", *args, "loss=dpo,ipo", "run_name=losses"]) == 0
    folder = tmp_path / "out" / "multirun" / "losses"
    doc = json.loads((folder / "sweep.json").read_text())
    assert doc["command"] == "tune" and [j["swept"] for j in doc["jobs"]] == [{"loss": "dpo"}, {"loss": "ipo"}]
    for job in doc["jobs"]:
        assert job["state"] == "done", job
        assert (folder / job["run_dir"] / "model.safetensors").is_file()
    assert load_main("vlmrm.tune.cli")(["-m", f"resume={folder}"]) == 0  # nothing left to run
    assert "(0 jobs to run, launcher=basic)" in capsys.readouterr().err


def test_a_notice_every_job_shares_is_printed_once_while_the_jobs_are_checked(capsys):
    from vlmrm.sweep.cli import _check_jobs, text_keys
    from vlmrm.train import COMMAND

    argv = ["env=CartPole", "reward=ground_truth", "agent=ppo", "n_envs=2", "agent.n_steps=32",
            "total_steps=100", "seed=0,1,2"]
    jobs = expand_sweep(argv, text_keys())
    assert len(jobs) == 3
    errors = _check_jobs(COMMAND, jobs)
    assert errors == {0: None, 1: None, 2: None}
    err = capsys.readouterr().err
    assert err.count("total_steps=100 is no multiple of") == 1, err
