"""``torchrun -m vlmrm.tta``: two gloo ranks give the one-process results; Ctrl-C keeps what was done."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from _caption import caption_set, save_tiny_lm, tiny_captioner
from _torchrun import Job, ctrl_c, left_behind, needs_proc, torchrun
from _tta import TINY, karpathy_split, make_class_folders

from vlmrm.tta.cli import main


def _finish(job: Job, timeout: float = 120) -> str:
    log = job.finish(timeout)
    assert job.returncode == 0, log
    return log


def _records(out: Path) -> list[dict]:
    """results.jsonl without the timings (the only field that may differ between runs)."""
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for r in recs:
        r.pop("seconds")
    return recs


def _metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    m.pop("seconds_per_sample")
    return m


@pytest.mark.slow
def test_caption_two_gloo_ranks_match_one_process(tmp_path):
    from vlmrm.caption.captioner import save_mapper

    ann, images = caption_set(tmp_path / "data", n=3)  # shards of 2 and 1 images
    save_mapper(tiny_captioner().mapper, tmp_path / "mapper.safetensors")
    args = ["task=caption", f"data={ann}", f"images={images}", f"lm={save_tiny_lm(tmp_path / 'lm')}",
            "tokenizer=clip", f"captioner={tmp_path / 'mapper.safetensors'}", "metric_model=vlmrm-tiny",
            "max_tokens=4", "k=3", "steps=2", "final_beams=2", "meteor=false", "lr=1e-3", *TINY]  # fmt: skip
    proc = torchrun("-m", "vlmrm.tta", *args, f"out={tmp_path / 'two'}", cwd=tmp_path, text=True)
    assert main([*args, f"out={tmp_path / 'one'}"]) == 0
    log = _finish(proc)
    assert "on 2 processes" in log and log.count("CIDEr") == 1  # rank 0 alone reports
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert [r["image_id"] for r in one] == [100, 101, 102]
    assert [r["caption"] for r in two] == [r["caption"] for r in one]
    for a, b in zip(one, two, strict=True):
        assert a["rewards"] == pytest.approx(b["rewards"], abs=1e-4)
    assert json.loads((tmp_path / "two" / "captions.json").read_text()) == json.loads(
        (tmp_path / "one" / "captions.json").read_text()
    )


@pytest.mark.slow
def test_classify_two_gloo_ranks_match_one_process(tmp_path):
    data = make_class_folders(tmp_path / "cls")  # 9 images: the shards differ in size
    args = ["task=classify", f"data={data}", "mode=prompt", "lr=0.05", *TINY]
    proc = torchrun("-m", "vlmrm.tta", *args, f"out={tmp_path / 'two'}", cwd=tmp_path, text=True)
    assert main([*args, f"out={tmp_path / 'one'}"]) == 0  # meanwhile, one process
    log = _finish(proc)
    assert "on 2 processes" in log and log.count("top-1 %") == 1  # rank 0 alone reports
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert len(one) == 9 and [r["index"] for r in one] == list(range(9))
    assert two == one  # predictions, top-5, rewards, and the order
    assert _metrics(tmp_path / "two") == _metrics(tmp_path / "one")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "config.json",
        "metrics.json",
        "results.jsonl",
    ]  # the per-rank files were merged


@pytest.mark.slow
def test_retrieve_two_gloo_ranks_match_one_process(tmp_path):
    # 40 images × 7 captions: two image batches (32 + 8) and two caption batches (256 + 24),
    # so each rank embeds part of the gallery; 5 queries: shards of 3 and 2.
    captions = [[f"picture {i} number {j}" for j in range(7)] for i in range(40)]
    ann, imgs = karpathy_split(tmp_path, captions)
    args = [
        "task=retrieve",
        "direction=i2t",
        f"data={ann}",
        f"images={imgs}",
        "model=vlmrm-tiny",
        "reward_model=vlmrm-tiny",
        "progress=false",
        "k=3",
        "steps=2",
        "lr=1e-3",
        "limit=5",
    ]
    proc = torchrun("-m", "vlmrm.tta", *args, f"out={tmp_path / 'two'}", cwd=tmp_path, text=True)
    assert main([*args, f"out={tmp_path / 'one'}"]) == 0
    _finish(proc)
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert len(one) == 5 and two == one
    assert _metrics(tmp_path / "two") == _metrics(tmp_path / "one")
    g1 = torch.load(tmp_path / "one" / "gallery.pt", weights_only=True)
    g2 = torch.load(tmp_path / "two" / "gallery.pt", weights_only=True)
    assert g2["policy_image"].shape == (40, g1["policy_image"].shape[1])
    assert g2["policy_text"].shape[0] == 280
    for name in ("policy_image", "policy_text"):
        assert torch.equal(g1[name], g2[name]), name


def _run_and_fresh_folder(tmp_path: Path) -> tuple[list[str], list[str], Path]:
    """A finished one-process classification of 6 images (``ref/``): its settings, its result
    lines, and an ``out/`` folder holding its config alone, for a test to fill with results."""
    data = make_class_folders(tmp_path / "cls", per_class=2)
    args = ["task=classify", f"data={data}", *TINY, "steps=1"]
    assert main([*args, f"out={tmp_path / 'ref'}"]) == 0
    ref = (tmp_path / "ref" / "results.jsonl").read_text().splitlines()
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text((tmp_path / "ref" / "config.json").read_text())
    return args, ref, out


def test_one_process_merges_rank_files_of_an_interrupted_run(tmp_path, capsys):
    """Resume with another number of processes: the rank files are merged, order restored."""
    args, ref, out = _run_and_fresh_folder(tmp_path)
    (out / "results.rank0.jsonl").write_text(f"{ref[4]}\n{ref[0]}\n")
    (out / "results.rank1.jsonl").write_text(f'{ref[3]}\n{{"key": "dog/1.png", "pr')  # cut line
    capsys.readouterr()
    assert main([*args, f"out={out}"]) == 0
    assert "3 done, 3 to go" in capsys.readouterr().err
    assert _records(out) == _records(tmp_path / "ref")
    assert not list(out.glob("results.rank*"))


@pytest.mark.slow
def test_a_resume_where_one_rank_has_nothing_left_finishes(tmp_path):
    """One sample to go on two ranks: rank 1's shard is empty, and it must still take part.

    This is what a Ctrl-C right after rank 1's last sample leaves behind; it once crashed
    rank 1 ("cannot unpack non-iterable NoneType") and left rank 0 waiting on a closed peer.
    """
    args, ref, out = _run_and_fresh_folder(tmp_path)
    (out / "results.rank0.jsonl").write_text("".join(f"{line}\n" for line in ref[1:]))
    log = _finish(torchrun("-m", "vlmrm.tta", *args, f"out={out}", cwd=tmp_path, text=True))
    assert "5 done, 1 to go on 2 processes" in log
    assert _records(out) == _records(tmp_path / "ref")


@pytest.mark.slow
@needs_proc
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_finished_samples_and_a_rerun_resumes(tmp_path, how):
    data = make_class_folders(tmp_path / f"cls-{how}-marker")
    marker = os.fspath(data)
    out = tmp_path / "out"
    common = ["task=classify", f"data={data}", *TINY, "steps=6"]
    args = [*common, f"out={out}"]
    proc = torchrun("-m", "vlmrm.tta", *args, cwd=tmp_path, text=True)
    # interrupt as soon as a rank has finished its first sample
    proc.wait_for(lambda: any(p.stat().st_size for p in out.glob("results.rank*.jsonl")),
                  f"a rank's first finished sample in {out}/results.rank*.jsonl", timeout=300, poll_s=0.05)
    stopped_at = time.monotonic()
    if how == "ctrl-c":
        ctrl_c(proc)
    else:  # a scheduler stopping the job: SIGTERM to the launcher alone, which passes it on
        os.kill(proc.pid, signal.SIGTERM)
    log = proc.finish(timeout=60)
    assert time.monotonic() - stopped_at < 20, log
    assert proc.returncode != 0
    assert left_behind(marker) == []
    assert "vlmrm/" not in log  # the workers stop without a traceback
    ours = [ln for ln in log.splitlines() if ln.startswith("interrupted")]
    assert len(ours) == 1 and log.strip().splitlines()[-1] == ours[0], log[-3000:]  # once, and last
    assert f"saved in {out}" in ours[0] and "run the same command to resume" in ours[0]
    kept = []
    for p in out.glob("results.rank*.jsonl"):
        for line in p.read_text().splitlines():
            try:
                kept.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut by the interruption: that sample is redone
    assert 1 <= len(kept) < 9  # interrupted mid-run; what was finished is on disk

    proc = torchrun("-m", "vlmrm.tta", *args, cwd=tmp_path, text=True)
    assert main([*common, f"out={tmp_path / 'one'}"]) == 0  # the reference, meanwhile
    log = _finish(proc)
    assert f"{len(kept)} done, {9 - len(kept)} to go on 2 processes" in log
    assert _records(out) == _records(tmp_path / "one")
    assert _metrics(out) == _metrics(tmp_path / "one")
