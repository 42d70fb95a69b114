"""Fault injection for checkpoint saves: SIGKILL at every file-system step of a save, then resume.

Run as a script (``python tests/_kill_saves.py WORKDIR [REWARD]``) by ``tests/test_faults.py``;
it prints one JSON line per kill point and a last line ``{"golden": ...}``.

A short CartPole DQN run (``keep_checkpoints=2``) trains normally, on the ground-truth
reward (``REWARD=ground_truth``, the default) or on the ``vlmrm-tiny`` CLIP reward with
episode relabelling (``REWARD=tiny``: frames are stored and scored in batches, so a
checkpoint holds rewards that were pending a moment before the save). Each time it starts
a checkpoint save, the process forks once per kill point: the child copies the run
folder, runs the same save into the copy and SIGKILLs itself right before its ``k``-th
file-system step (the fsync of a written file or folder, an ``os.replace``, a
``shutil.rmtree``). The copy is then exactly what a ``kill -9`` of the training process at
that point leaves on disk. Enumeration of a save ends when a child finishes its save
without reaching ``k``; that last copy is the save done whole.

Afterwards every killed copy is resumed (``resume=<copy> total_steps=RESUME_TO``) and its
final replay buffer is compared with the uninterrupted run's. With the CLIP reward only
the kill points that decide where a resume starts are resumed — right before and right
after the checkpoint folder is published by its rename, in the saves of steps 80 and 120
(every other point of a save leaves the same files as one of these two, and a kill
between saves, with frames pending, leaves what "right after" does) — and each one's
buffer is also compared, reward by reward, with a resume of the save done whole from the
same step: the run without the kill.
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
    "env=CartPole", "n_envs=1", "subprocess=false", f"total_steps={TOTAL}",
    f"checkpoint_every={EVERY}", "keep_checkpoints=2", "agent.learning_starts=20", "agent.train_freq=10",
    "agent.gradient_steps=1", "agent.buffer_size=1000", "eval.episodes=0", "progress=false", "threads=1",
]
REWARDS = {"ground_truth": ["reward=ground_truth"], "tiny": ["reward=tiny", "reward.relabel=episode"]}
#: With the CLIP reward: the saves whose kill points are resumed.
CLIP_SAVES = (80, 120)
KEYS = ("observations", "next_observations", "actions", "rewards", "dones")


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
            if code != 3:
                raise RuntimeError(f"the save child at step {step}, k={k} failed (exit {code})")
            os.replace(case, case_root / f"step{step}-whole")  # the save done whole: a reference
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


def _resume(run: Path):
    """Resume ``run`` to RESUME_TO steps; its final checkpoint and replay buffer."""
    train(load_resume_config(run, [f"total_steps={RESUME_TO}"]))
    return _buffer(run)


def _check(case: dict, golden, reference=None) -> dict:
    """Resume a killed copy to RESUME_TO steps; compare its buffer with the uninterrupted run's.

    ``reference(step)``: the buffer of the same run resumed from the save of ``step`` done
    whole (CLIP reward), compared row by row.
    """
    run = Path(case["case"])
    lines: list[str] = []
    try:
        s = checkpoint.latest_checkpoint(run, warn=lines.append).step
    except checkpoint.NoCheckpoint:  # killed in the first save: the run starts over
        s = 0
    result = {**case, "resumed_from": s, "warnings": lines}
    ckpt, buf = _resume(run)
    n = int(buf.pos)
    chain_ok = all(
        np.array_equal(buf.next_observations[i], buf.observations[i + 1])
        for i in range(s, n - 1)
        if not buf.dones[i].any()
    )
    prefix_ok = all(np.array_equal(getattr(buf, key)[:s], getattr(golden, key)[:s]) for key in KEYS)
    result.update(final_step=ckpt.step, buffer_rows=n, chain_ok=bool(chain_ok), prefix_ok=bool(prefix_ok))
    if reference is not None:
        ref = reference(s)
        rewards = buf.rewards[:n]
        result.update(
            # a pending frame lost would leave its NaN placeholder; each transition scored once
            no_placeholder=bool(np.isfinite(rewards).all()),
            relabelled=int(ckpt.state().get("relabeller", {}).get("relabelled", -1)),
            same_as_whole_save=bool(int(ref.pos) == n and all(
                np.array_equal(getattr(buf, key)[:n], getattr(ref, key)[:n]) for key in KEYS)),
            reward_mean=float(rewards.mean()),
        )
    return result


def _publish_points(cases: list[dict]) -> list[dict]:
    """Per save of :data:`CLIP_SAVES`: the kill right before its folder's rename, and right after."""
    chosen = []
    for step in CLIP_SAVES:
        saved = [c for c in cases if c["save_step"] == step]
        rename = next(i for i, c in enumerate(saved) if c["what"].startswith("replace") and c["what"].endswith(".partial"))
        chosen += saved[rename : rename + 2]
    return chosen


def main(workdir: str, reward: str = "ground_truth") -> None:
    root = Path(workdir)
    os.environ["KILL_LOG"] = str(root / "kill.log")
    cases: list[dict] = []
    real = checkpoint.save_checkpoint
    save = _killing_save(real, root / "cases", cases)
    callbacks.save_checkpoint = runner.save_checkpoint = save
    cfg = compose_train_config(ARGS + REWARDS[reward] + [f"out={root}", "run_name=golden"])
    try:
        train(cfg)
    finally:
        callbacks.save_checkpoint = runner.save_checkpoint = real
    _, golden = _buffer(root / "golden")
    reference = None
    if reward != "ground_truth":
        cases = _publish_points(cases)
        resumed: dict[int, object] = {}

        def reference(step: int):
            if step not in resumed:
                resumed[step] = _resume(root / "cases" / f"step{step}-whole")[1]
            return resumed[step]

    for case in cases:
        print(json.dumps(_check(case, golden, reference)), flush=True)
    print(json.dumps({"golden": int(golden.pos)}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
