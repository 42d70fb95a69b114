"""The trainer's torch thread policy: the cores left after env worker processes, an
override, and one line saying the choice."""

from __future__ import annotations

import pytest

from vlmrm.agents.config import (
    MAX_AUTO_THREADS,
    describe_threads,
    env_workers,
    torch_threads,
    train_threads,
)
from vlmrm.errors import ConfigError


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [
        (2, 0, 1),  # half the cores: room for rendering and other jobs
        (2, 1, 1),
        (2, 8, 1),  # more workers than cores: never below one thread
        (8, 0, 4),
        (8, 6, 2),  # the cores left after the env workers
        (16, 4, 4),  # capped
        (16, 14, 2),
        (64, 0, 4),
        (1, 0, 1),
    ],
)
def test_auto_threads_leave_cores_to_env_workers(cores: int, workers: int, expected: int) -> None:
    assert MAX_AUTO_THREADS == 4
    assert torch_threads("auto", workers, cores=cores) == expected
    assert torch_threads(None, workers, cores=cores) == expected


def test_an_integer_overrides_the_policy() -> None:
    assert torch_threads(3, 8, cores=2) == 3
    assert torch_threads(2, 0, cores=64) == 2
    with pytest.raises(ConfigError, match="threads"):
        torch_threads(0)
    with pytest.raises(ConfigError, match="threads"):
        torch_threads("many")


def test_env_workers_count_only_subprocess_envs() -> None:
    assert env_workers({"n_envs": 8, "subprocess": True}) == 8
    assert env_workers({"n_envs": 8, "subprocess": False}) == 0
    assert env_workers({"n_envs": 1, "subprocess": True}) == 0  # one env steps in-process


def test_the_choice_and_its_reason_in_one_line() -> None:
    from vlmrm.agents.config import available_cores

    cfg = {"threads": 1, "n_envs": 4, "subprocess": True}
    assert train_threads(cfg) == 1
    assert describe_threads(cfg) == "torch threads: 1 (threads=1)"
    cfg = {"threads": "auto", "n_envs": 64, "subprocess": True}
    assert train_threads(cfg) == 1
    cores = available_cores()
    assert describe_threads(cfg) == (
        f"torch threads: 1 (auto: {cores} cores, 64 env worker processes; threads=N overrides)"
    )
    cfg = {"threads": "auto", "n_envs": 1, "subprocess": False}
    assert train_threads(cfg) == torch_threads("auto", 0, cores=cores)


def _benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reward_throughput.py"
    spec = importlib.util.spec_from_file_location("reward_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_load_and_threads_arguments() -> None:
    import argparse

    bench = _benchmark()
    assert bench.counts("0,1") == [0, 1]
    assert bench.counts("2") == [2]
    for bad in ("-1", "one", "0,,1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="non-negative integers"):
            bench.counts(bad)
    assert bench.thread_counts("auto,2") == ["auto", "2"]
    for bad in ("0", "two", "auto,-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
            bench.thread_counts(bad)
    with pytest.raises(SystemExit):
        bench.main(["--load", "x"])


def test_busy_cores_run_during_the_block_and_stop_after() -> None:
    bench = _benchmark()
    with bench.busy_cores(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
    with bench.busy_cores(0) as procs:
        assert procs == []
