"""Fault injection for checkpoint saves: SIGKILL at every file-system step of a save, then resume.

Run as a script (``python tests/_kill_saves.py WORKDIR``) by ``tests/test_faults.py``; it
prints one JSON line per kill point and a last line ``{"golden": ...}``.

A short CartPole DQN run (ground-truth reward, ``keep_checkpoints=2``) trains normally.
Each time it starts a checkpoint save, the process forks once per kill point: the child
copies the run folder, runs the same save into the copy and SIGKILLs itself right
before its ``k``-th file-system step (the fsync of a written file or folder, an
``os.replace``, a ``shutil.rmtree``). The copy is then exactly what
a ``kill -9`` of the training process at that point leaves on disk. Enumeration of a
save ends when a child finishes its save without reaching ``k``.

Afterwards every killed copy is resumed (``resume=<copy> total_steps=RESUME_TO``) and
its final replay buffer is compared with the uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from vlmrm.agents import callbacks, checkpoint, runner  # noqa: E402
from vlmrm.agents.config import compose_train_config, load_resume_config  # noqa: E402
from vlmrm.agents.runner import train  # noqa: E402

TOTAL, EVERY, RESUME_TO = 120, 40, 140
ARGS = [
    "env=CartPole", "reward=ground_truth", "n_envs=1", "subprocess=false", f"total_steps={TOTAL}",
    f"checkpoint_every={EVERY}", "keep_checkpoints=2", "agent.learning_starts=20", "agent.train_freq=10",
    "agent.gradient_steps=1", "agent.buffer_size=1000", "eval.episodes=0", "progress=false", "threads=1",
]


def _killing_save(real_save, case_root: Path, cases: list[dict]):
    """A ``save_checkpoint`` that first forks one killed copy per kill point."""

    def save(model, run_dir, **kwargs):
        step = int(model.num_timesteps)
        k = 0
        while True:
            case = case_root / f"step{step}-k{k:02d}"
            pid = os.fork()
            if pid == 0:  # the child: copy, arm, save
                try:
                    shutil.copytree(run_dir, case)
                    _arm(k)
                    real_save(model, case, **kwargs)
                    os._exit(3)  # every step of the save done: k is past the end
                except BaseException:  # noqa: BLE001
                    os._exit(4)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                cases.append({"case": str(case), "save_step": step, "k": k, "what": _what(case)})
                k += 1
                continue
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
            shutil.rmtree(case, ignore_errors=True)
            if code != 3:
                raise RuntimeError(f"the save child at step {step}, k={k} failed (exit {code})")
            break
        return real_save(model, run_dir, **kwargs)

    return save


def _arm(k: int) -> None:
    """Make the ``k``-th file-system step of this process SIGKILL it first."""
    count = [0]
    from vlmrm.runtime import atomic, units

    targets = {"fsync_file": (atomic, units), "fsync_dir": (atomic, units), "replace": (os,), "rmtree": (shutil,)}

    def wrap(name, fn):
        def step(*args, **kwargs):
            if count[0] == k:
                Path(os.environ["KILL_LOG"]).write_text(f"{name} {args[0]!s}")
                os.kill(os.getpid(), signal.SIGKILL)
            count[0] += 1
            return fn(*args, **kwargs)

        return step

    for name, modules in targets.items():
        step = wrap(name, getattr(modules[0], name))
        for module in modules:
            setattr(module, name, step)


def _what(case: Path) -> str:
    log = Path(os.environ["KILL_LOG"])
    text = log.read_text() if log.exists() else "?"
    return text.replace(str(case), "<run>")


def _buffer(run: Path):
    ckpt = checkpoint.latest_checkpoint(run)
    return ckpt, checkpoint.load_replay_buffer(ckpt.replay_buffer_path)


def _check(case: dict, golden) -> dict:
    """Resume a killed copy to RESUME_TO steps; compare its buffer with the uninterrupted run's."""
    run = Path(case["case"])
    lines: list[str] = []
    try:
        s = checkpoint.latest_checkpoint(run, warn=lines.append).step
    except checkpoint.NoCheckpoint:  # killed in the first save: the run starts over
        s = 0
    result = {**case, "resumed_from": s, "warnings": lines}
    train(load_resume_config(run, [f"total_steps={RESUME_TO}"]))
    ckpt, buf = _buffer(run)
    n = int(buf.pos)
    chain_ok = all(
        np.array_equal(buf.next_observations[i], buf.observations[i + 1])
        for i in range(s, n - 1)
        if not buf.dones[i].any()
    )
    prefix_ok = all(
        np.array_equal(getattr(buf, key)[:s], getattr(golden, key)[:s])
        for key in ("observations", "next_observations", "actions", "rewards", "dones")
    )
    result.update(final_step=ckpt.step, buffer_rows=n, chain_ok=bool(chain_ok), prefix_ok=bool(prefix_ok))
    return result


def main(workdir: str) -> None:
    root = Path(workdir)
    os.environ["KILL_LOG"] = str(root / "kill.log")
    cases: list[dict] = []
    real = checkpoint.save_checkpoint
    save = _killing_save(real, root / "cases", cases)
    callbacks.save_checkpoint = runner.save_checkpoint = save
    cfg = compose_train_config(ARGS + [f"out={root}", "run_name=golden"])
    try:
        train(cfg)
    finally:
        callbacks.save_checkpoint = runner.save_checkpoint = real
    _, golden = _buffer(root / "golden")
    for case in cases:
        print(json.dumps(_check(case, golden)), flush=True)
    print(json.dumps({"golden": int(golden.pos)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
