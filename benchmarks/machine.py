"""The machine a benchmark ran on, in one line per fact: CPU, the vector units that decide
which precision is fast, memory, load, library versions and the GPU.

Ratios in ``benchmarks/RESULTS.md`` depend on these: int8 is fast only with VNNI, bf16 and
fp16 matmuls only with the matching AVX-512/AMX units, and a shared machine's load average
says how far its wall times can be trusted.

    python benchmarks/machine.py
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: CPU flags that decide which precision has fast matmuls.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
         "amx_bf16", "amx_int8", "amx_fp16")


def cpu_info() -> tuple[str, set[str]]:
    """The CPU's model name and flags (Linux ``/proc/cpuinfo``; elsewhere the platform's name)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return platform.processor() or platform.machine(), set()
    name, flags = platform.machine(), set()
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            name = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    return name, flags


def memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * size / 2**30


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def main() -> int:
    name, flags = cpu_info()
    print(f"cpu: {name}, {os.cpu_count()} logical cores")
    print("cpu flags: " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in FLAGS))
    mem = memory_gib()
    print(f"memory: {mem:.0f} GiB" if mem else "memory: unknown")
    if hasattr(os, "getloadavg"):
        print("load average (1, 5, 15 min): " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
    print(f"python {platform.python_version()}, torch {_version('torch')}, "
          f"open_clip {_version('open_clip_torch')}, stable-baselines3 {_version('stable_baselines3')}")
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"gpu {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB")
    else:
        print("gpu: none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
