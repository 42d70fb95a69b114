"""torchrun + gloo on the CPU: two processes give exactly the one-process results, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import textwrap
import time

import numpy as np
import pytest
from _torchrun import alive, ctrl_c, left_behind, needs_proc, torchrun

import vlmrm
from vlmrm.distributed import DistInfo, gather_to_rank0, shard

SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np, vlmrm
    from vlmrm.distributed import DistributedReward, distributed_session, gather_to_rank0, shard

    out, mode = sys.argv[1], sys.argv[2]
    frames = np.random.default_rng(0).integers(0, 256, size=(7, 40, 56, 3), dtype=np.uint8)
    with distributed_session() as info:
        clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
        reward = vlmrm.CLIPReward(clip, goal="a cart with an upright pole", baseline="a cart", alpha=0.5)
        # sharded job: each rank scores its own items, rank 0 merges them in order
        mine = [(i, float(reward(frames[i])[0])) for i in shard(list(range(len(frames))), info)]
        merged = gather_to_rank0(mine, info)
        # reward serving: rank 0 asks, every rank computes a chunk
        with DistributedReward(reward, info) as dreward:
            if info.is_main:
                served = dreward(frames)
                if mode == "hang":
                    print("READY", flush=True)
                    time.sleep(600)  # held in place until the test's Ctrl-C; never waited out
                np.savez(out, served=served, sharded=np.array([r for _, r in merged]),
                         order=np.array([i for i, _ in merged]), world=info.world_size)
            else:
                dreward.serve()
    """
)


def test_shard_and_gather_single_process():
    info = DistInfo()
    items = list(range(5))
    assert shard(items, info) == items
    assert gather_to_rank0(items, info) == items
    assert shard(items, DistInfo(rank=1, world_size=2)) == [1, 3]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, tiny_clip):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    job = torchrun(str(script), str(tmp_path / "two.npz"), "ok", text=True)
    log = job.finish(timeout=240)
    assert job.returncode == 0, log
    two = np.load(tmp_path / "two.npz")
    assert int(two["world"]) == 2
    frames = np.random.default_rng(0).integers(0, 256, size=(7, 40, 56, 3), dtype=np.uint8)
    reward = vlmrm.CLIPReward(tiny_clip, goal="a cart with an upright pole", baseline="a cart", alpha=0.5)
    one = reward(frames)
    np.testing.assert_array_equal(two["order"], np.arange(7))
    np.testing.assert_allclose(two["sharded"], one, atol=1e-6)
    np.testing.assert_allclose(two["served"], one, atol=1e-6)


@pytest.mark.slow
@needs_proc
def test_ctrl_c_leaves_no_process_behind(tmp_path):
    script = tmp_path / "hang_job.py"
    script.write_text(SCRIPT)
    marker = str(script)
    job = torchrun(str(script), str(tmp_path / "x.npz"), "hang", text=True)
    job.printed("READY", timeout=180)  # rank 0 is past the first batch and rank 1 is serving
    assert len(alive(marker)) >= 3  # torchrun + 2 workers
    stopped_at = time.monotonic()
    ctrl_c(job)
    log = job.finish(timeout=60)
    assert left_behind(marker) == [], log
    assert time.monotonic() - stopped_at < 20, log  # rank 1 waits for batches interruptibly
