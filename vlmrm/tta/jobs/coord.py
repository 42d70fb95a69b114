"""Where this process stands in a torchrun job, and the group the ranks coordinate in.

The agreeing itself (a problem on any rank raised on all, rank 0's result handed to all)
is :func:`vlmrm.distributed.run_together` / :func:`~vlmrm.distributed.run_on_main`; this
module only provides the process group they run in for TTA (:func:`coord_group`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

#: Ranks wait in the bookkeeping group for the slowest one to finish its whole shard.
COORD_TIMEOUT = timedelta(days=7)
_COORD: dict[str, Any] = {}  # the bookkeeping group of the current process group


def dist_info():
    """The job's :class:`~vlmrm.distributed.DistInfo`: rank 0 of 1 unless a process group is up.

    Under torchrun (a collective call) it also sets up the group :func:`coord_group` returns.
    """
    import torch.distributed as dist

    from vlmrm.distributed import DistInfo, init_distributed

    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    info = init_distributed()
    if info.enabled and _COORD.get("world") is not dist.group.WORLD:
        _COORD["world"] = dist.group.WORLD
        _COORD["group"] = dist.new_group(backend="gloo", timeout=COORD_TIMEOUT)
    return info


def coord_group() -> Any:
    """A gloo group with a long timeout for the results bookkeeping (``None`` outside torchrun).

    Ranks wait in it for each other: the first to finish its shard waits for the last one,
    possibly for a long time on uneven hardware, and NCCL aborts a collective after 10
    minutes (gloo after 30). Results are small, so gloo on the CPU costs nothing.
    """
    return _COORD.get("group")
