"""``torchrun -m vlmrm.score``: two gloo ranks write what one process writes; Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
from _torchrun import alive, ctrl_c, left_behind, needs_proc, torchrun

import vlmrm  # noqa: F401 - before any env (import order, see vlmrm.envs)
from vlmrm import score as score_cli
from vlmrm.video import list_image_files, write_video

ARGS = [
    "goal=a white square on the right",
    "baseline=a white square",
    "alpha=[0,0.5]",
    "model=vlmrm-tiny",
    "device=cpu",
]


def _frames(n: int, seed: int, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, size=(n, size, size + 16, 3), dtype=np.uint8
    )


@pytest.mark.slow
def test_two_gloo_ranks_write_what_one_process_writes(tmp_path, capsys, monkeypatch):
    write_video(tmp_path / "a.mp4", _frames(10, 0), fps=5)
    write_video(tmp_path / "b_png", _frames(7, 1))
    write_video(tmp_path / "c_png", _frames(5, 2))
    # rank 0 gets a.mp4 and b_png, rank 1 the missing video and c_png
    videos = "videos=[a.mp4,missing.mp4,b_png,c_png]"

    job = torchrun("-m", "vlmrm.score", videos, *ARGS, "out=two", "progress=false", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)  # the same relative paths, so the same `video` column
    # the one-process run, while torchrun starts its workers
    assert score_cli.main([videos, *ARGS, "out=one", "progress=false"]) == 1
    capsys.readouterr()
    log = job.finish(timeout=240)

    assert job.returncode != 0, log  # rank 0 exits 1: one video failed
    assert "1 video(s) had problems" in log and "missing.mp4" in log
    assert log.count("CLIP reward per video") == 1  # only rank 0 prints the table
    one, two = tmp_path / "one", tmp_path / "two"
    a = pd.read_csv(one / "scores.csv")
    b = pd.read_csv(two / "scores.csv")
    assert len(a) == (10 + 7 + 5) * 2 and list(a.columns) == list(b.columns)
    keys = ["video", "frame", "time", "goal", "baseline", "alpha"]
    pd.testing.assert_frame_equal(a[keys], b[keys])  # same rows, same order
    np.testing.assert_allclose(b.reward.to_numpy(), a.reward.to_numpy(), rtol=0, atol=1e-6)
    sa, sb = pd.read_csv(one / "summary.csv"), pd.read_csv(two / "summary.csv")
    pd.testing.assert_frame_equal(
        sa[["video", "alpha", "n_frames", "argmax_frame"]],
        sb[["video", "alpha", "n_frames", "argmax_frame"]],
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(one / "failures.csv"), pd.read_csv(two / "failures.csv")
    )
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())


@pytest.mark.slow
@needs_proc
def test_ctrl_c_mid_run_leaves_no_process_behind(tmp_path):
    root = tmp_path / f"vlmrm_ctrl_c_{os.getpid()}"  # in every worker's (and ffmpeg's) command line
    root.mkdir()
    marker = str(root)
    # a long video for rank 0: 20000 hard links to one PNG (~90 s of scoring, nothing to write)
    write_video(root / "one_png", _frames(1, 3, size=224))
    (frame,) = list_image_files(root / "one_png")
    (root / "long_png").mkdir()
    for i in range(20000):
        os.link(frame, root / "long_png" / f"{i}.png")
    write_video(root / "a.mp4", _frames(10, 0), fps=5)
    write_video(root / "b_png", _frames(7, 1))
    out = root / "out"
    # rank 0: long_png, b_png; rank 1: a.mp4, then it waits for rank 0 in the gather
    argv = [f"videos=[{root / 'long_png'},{root / 'a.mp4'},{root / 'b_png'}]", *ARGS, f"out={out}"]
    job = torchrun("-m", "vlmrm.score", *argv, cwd=tmp_path)
    job.wait_for(lambda: "[rank 0/2] scoring" in job.output() and "[rank 1/2] scoring" in job.output(),
                 "both ranks to start scoring", timeout=180)
    # Rank 1's one short video takes a moment; then it waits for rank 0 in a collective. Had it
    # not finished yet, the Ctrl-C below would find it scoring: every check still holds.
    time.sleep(1.5)
    assert len(alive(marker)) >= 3  # torchrun + 2 workers
    stopped_at = time.monotonic()
    ctrl_c(job)
    job.wait(timeout=60)
    took = time.monotonic() - stopped_at
    text = job.finish(timeout=10)  # (the job's last line comes after torchrun has ended)
    assert left_behind(marker, tries=100) == [], text
    assert job.returncode != 0, text
    # every rank stops within seconds (rank 1, waiting for rank 0 in a collective, too;
    # torchrun would kill it only after 30 s), and our one line for the job comes last,
    # after torchrun's own SignalException traceback
    assert took < 20, (took, text)
    ours = [ln for ln in text.splitlines() if ln.startswith("interrupted")]
    assert len(ours) == 1 and text.strip().splitlines()[-1] == ours[0], text[-3000:]
    assert "run the same command again" in ours[0] and "vlmrm/" not in text
    assert not (out / "scores.csv").exists()  # interrupted before rank 0 wrote anything
