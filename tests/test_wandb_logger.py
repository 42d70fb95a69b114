"""``logger=wandb``: an offline W&B run holds the config, the scalars and the evaluation videos,
and it is finished however the training ends.

W&B writes an offline run file (``run-<id>.wandb``) in its own service process:
``run.finish()`` hands it the run's last records and returns, and the service closes the file
moments later (until then it may hold only its 7-byte header). These tests read the file only
after ``wandb.teardown()``, which returns once that process has ended, so every record is on
disk: they wait on W&B, not on time.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from _runs import tb_scalars

from vlmrm.train import main as train_main

pytest.importorskip("wandb")

ARGV = ["env=CartPole", "reward=tiny", "total_steps=64", "n_envs=2", "eval.every=32", "logger=wandb",
        "wandb.project=vlmrm-test", "wandb.tags=[smoke]", "wandb.group=g", "run_name=r", "progress=false"]

#: The offline run file's layout (W&B's LevelDB-style log): a 7-byte header, then records in
#: 32 KiB blocks, each record ``crc32(type + data) | length | type | data``.
HEADER = b":W&B"
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _offline_records(path: Path) -> list:
    """Every record of an offline run file, checksums verified (parsed with W&B's own protobuf)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data.startswith(HEADER), data[:16]
    records, parts, pos = [], b"", 7
    while pos < len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a record header is padding
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:  # zero padding
            continue
        assert len(body) == length and zlib.crc32(bytes([kind]) + body) == crc, f"damaged record at {pos}"
        parts = body if kind in (FULL, FIRST) else parts + body
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
    return records


def _finished_run(run: Path) -> tuple[Path, list]:
    """The run's offline folder and its records, once W&B has written them all."""
    import wandb

    wandb.teardown()  # returns when W&B's service process has closed every run file and ended
    run_id = (run / "wandb_id.txt").read_text().strip()
    [offline] = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    return offline, _offline_records(offline / f"run-{run_id}.wandb")


def _kinds(records: list) -> list[str]:
    return [r.WhichOneof("record_type") for r in records]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_logger_offline(tmp_path, offline):
    assert train_main([*ARGV, f"out={tmp_path}"]) == 0
    offline_dir, records = _finished_run(tmp_path / "r")
    raw = b"".join(r.SerializeToString() for r in records)
    for logged in (b"vlmrm-tiny", b"total_steps", b"rollout/gt_return", b"eval/clip_return", b"train/loss",
                   b"vlmrm-test", b"smoke"):
        assert logged in raw, logged
    kinds = _kinds(records)
    assert kinds[0] == "header" and "run" in kinds and kinds.count("history") >= 2
    assert kinds[-1] == "exit" and records[-1].exit.exit_code == 0  # finished, as a success
    steps = [r.history.step.num for r in records if r.HasField("history")]
    assert steps == sorted(steps) and steps[-1] == 64  # SB3's env steps, up to the last one
    assert len(list(offline_dir.glob("files/media/videos/eval/*.mp4"))) == 2  # steps 32 and 64
    assert "rollout/gt_return" in tb_scalars(tmp_path / "r")  # TensorBoard stays


@pytest.mark.parametrize("fault", [RuntimeError, KeyboardInterrupt])
def test_a_training_that_raises_finishes_its_wandb_run_as_failed(fault, tmp_path, offline, monkeypatch):
    """A crash (or an abort) after the W&B run started: the run is finished, not left open."""
    import wandb

    from vlmrm.agents import runner

    def crash(*args, **kwargs):
        raise fault("injected at the final save")

    monkeypatch.setattr(runner, "_finish", crash)  # after learn, before the logger is closed
    if fault is KeyboardInterrupt:
        assert train_main([*ARGV, f"out={tmp_path}"]) == 130  # an abort
    else:
        with pytest.raises(RuntimeError, match="injected"):
            train_main([*ARGV, f"out={tmp_path}"])
    assert wandb.run is None  # finished in this process, not at its exit
    _, records = _finished_run(tmp_path / "r")
    assert _kinds(records)[-1] == "exit" and records[-1].exit.exit_code == 1  # marked failed


def test_the_record_reader_refuses_a_damaged_file(tmp_path):
    """The reader above can fail: a flipped byte breaks its record's checksum."""
    from wandb.proto import wandb_internal_pb2

    body = wandb_internal_pb2.Record(num=7).SerializeToString()
    record = struct.pack("<IHB", zlib.crc32(bytes([FULL]) + body), len(body), FULL) + body
    good = HEADER + b"\xe1\xbe\x00" + record
    (tmp_path / "good.wandb").write_bytes(good)
    assert [r.num for r in _offline_records(tmp_path / "good.wandb")] == [7]
    (tmp_path / "bad.wandb").write_bytes(good[:-1] + b"\x01")
    with pytest.raises(AssertionError, match="damaged record"):
        _offline_records(tmp_path / "bad.wandb")
    (tmp_path / "header.wandb").write_bytes(good[:7])  # what a read before W&B's flush finds
    assert _offline_records(tmp_path / "header.wandb") == []
