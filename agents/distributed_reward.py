"""Training with the CLIP reward spread over ranks: ``torchrun ... -m vlmrm.train reward.distributed=true``.

SB3 training is one learner, so the envs, the agent, the run folder, the logs and the
checkpoints stay on rank 0 and only the reward model is replicated: rank 0 trains as a
one-process run would (:func:`vlmrm.agents.runner.train`) with its CLIP reward replaced
by a :class:`ServedReward`, which splits every scoring batch (episode relabelling batches,
per-step batches, evaluation episodes) over the ranks through
:class:`vlmrm.distributed.DistributedReward`; ranks > 0 build the same reward model on their
own device and serve until rank 0 is done. The frames travel over gloo (CPU tensors; they
come from the renderers on the CPU anyway), whatever the GPUs.

Agreement, so that no rank waits forever for another:

* the settings are checked identically on every rank before anything starts (a bad
  setting is printed once, by rank 0);
* once each rank has built its reward model (rank 0 also its envs), they agree on any
  problem (:func:`vlmrm.distributed.agree`): one ``error:`` line on rank 0, status 2 on all;
* rank 0 releases the others with a status (:meth:`DistributedReward.close`): done,
  failed with a user-facing error (which the others then learn, and exit 2 with), or
  aborted (they exit as after a Ctrl-C).

Ctrl-C (SIGINT to the process group, or SIGTERM) is graceful on every rank
(:class:`~vlmrm.runtime.stop.GracefulStop`): rank 0 stops at the next step, scores what is
pending, saves its checkpoint and then releases the others, which keep serving until then.

Resuming is independent of the number of ranks: a checkpoint holds nothing per rank.
``reward.distributed=true`` without torchrun (or with one process) scores in the one
process, with a notice.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlmrm.agents.runner import TrainResult, kept_and_resume
from vlmrm.agents.runner import train as train_one
from vlmrm.distributed import RankLost, _one_line
from vlmrm.errors import VLMRMError
from vlmrm.runtime.stop import GracefulStop

#: How rank 0 ended, as sent to the serving ranks when it releases them.
DONE, FAILED, ABORTED = 0, 1, 2


def _say(msg: str) -> None:
    print(f"[vlmrm.train] {msg}", file=sys.stderr, flush=True)


def _world_size() -> int:
    import os

    from vlmrm.distributed import launched_by_torchrun

    return int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else 1


class ServedReward:
    """Rank 0's reward model: calls are spread over all ranks, attributes are the local model's.

    Relabelling reads ``clip.image_size`` (frame storage size), the description reads
    ``clip.device``: those come from rank 0's own :class:`vlmrm.CLIPReward`.
    """

    def __init__(self, reward: Any, served: Any) -> None:
        self.reward = reward
        self.served = served

    def __call__(self, frames: Any):
        return self.served(frames)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reward, name)


def train_job(cfg: DictConfig, argv: list[str] | None = None, stop: GracefulStop | None = None) -> TrainResult:
    """Train as ``cfg`` says; under torchrun with ``reward.distributed=true`` on every rank.

    Several torchrun processes without ``reward.distributed=true`` would train several
    agents into one run folder: refused (on every rank alike, printed once).
    """
    world = _world_size()
    if world == 1:
        if cfg.reward.get("distributed"):
            _say("reward.distributed=true without torchrun (or with one process): scoring in this process")
        return train_one(cfg, argv, stop)
    from vlmrm.distributed import AgreedError

    if cfg.reward.get("model") is None:
        raise AgreedError(
            f"torchrun started {world} processes, but reward=ground_truth has no reward model to spread; "
            "run it with plain python (training itself is one process)"
        )
    if not cfg.reward.get("distributed"):
        raise AgreedError(
            f"torchrun started {world} processes: add reward.distributed=true to spread the CLIP reward "
            "over them (training itself is one process), or run with plain python"
        )
    from vlmrm.distributed import distributed_session

    with distributed_session(backend="gloo") as info:  # frames are CPU tensors: gloo
        if info.is_main:
            return _main_rank(cfg, argv, stop or GracefulStop(), info)
        return _serving_rank(cfg, info)


def _main_rank(cfg: DictConfig, argv: list[str] | None, stop: GracefulStop, info: Any) -> TrainResult:
    """Rank 0: the one-process trainer, its reward served by every rank."""
    from vlmrm.distributed import AgreedError, DistributedReward, agree

    state: dict[str, Any] = {"served": None}

    def wrap(reward: Any) -> ServedReward:
        problem = agree(None, info)  # the envs and rank 0's reward model are built: rank 0 is ready
        if problem is not None:
            state["agreed"] = True
            raise AgreedError(problem)
        served = state["served"] = DistributedReward(reward, info)
        _say(f"reward: each scoring batch split over {info.world_size} ranks (gloo)")
        return ServedReward(reward, served)

    def interrupted() -> None:
        """A signal stopped rank 0: release the others now. If one is gone, its death is the
        news (torchrun signals the survivors of a dead rank): this raises RankLost."""
        if state["served"] is not None:
            state["served"].close(ABORTED)

    try:
        result = train_one(cfg, argv, stop, wrap_reward=wrap, on_interrupt=interrupted)
    except RankLost:  # a peer died: nobody is left to release or agree with
        raise
    except VLMRMError as exc:
        message = _one_line(exc)
        if state["served"] is not None:  # the others serve: release them, then tell them
            state["served"].close(FAILED)
            raise AgreedError(agree(message, info) or message) from None
        if not state.get("agreed"):  # failed before the agreement: the others wait in it
            raise AgreedError(agree(message, info) or message) from None
        raise
    except BaseException:
        if state["served"] is not None:
            _release_quietly(state["served"])
        raise
    try:
        state["served"].close(DONE)
    except RankLost as exc:  # it died after rank 0's last scoring batch
        raise RankLost(f"{exc}; {kept_and_resume(result.run_dir)}") from None
    _say(f"rank 0 scored {state['served'].frames} frames")
    return result


def _resume_hint(cfg: DictConfig) -> str:
    """A serving rank's view of what rank 0 kept: its run folder is known when named."""
    if cfg.get("resume") is not None:
        run = str(cfg.resume)
    elif cfg.get("run_name"):
        run = str(Path(str(cfg.out)) / str(cfg.run_name))
    else:
        return f"its last checkpoint is intact; resume with: python -m vlmrm.train resume=<its run folder in {cfg.out}>"
    return f"its last checkpoint is intact; resume with: python -m vlmrm.train resume={run}"


def _release_quietly(served: Any) -> None:
    """Tell the serving ranks that rank 0 aborted (if they can still hear it)."""
    try:
        served.close(ABORTED)
    except Exception:  # noqa: BLE001 - the others may be gone already (a second Ctrl-C)
        pass


def _serving_rank(cfg: DictConfig, info: Any) -> TrainResult:
    """Ranks > 0: build the same reward model, agree with rank 0, serve until it is done."""
    import torch

    from vlmrm.agents import builders
    from vlmrm.agents.config import torch_threads
    from vlmrm.agents.settings import goal_prompt
    from vlmrm.distributed import AgreedError, DistributedReward, agree, rank_device

    torch.set_num_threads(torch_threads(cfg.get("threads", "auto")))
    problem, reward = None, None
    try:
        section = dict(cfg.reward)
        section["device"] = rank_device(section.get("device"), info)
        goal = goal_prompt(cfg.env.goal_template, cfg.goal)
        reward = builders.build_reward_model(section, goal, cfg.get("baseline"))
    except VLMRMError as exc:
        problem = _one_line(exc)
    agreed = agree(problem, info)
    if agreed is not None:
        raise AgreedError(agreed)
    served = DistributedReward(reward, info)
    with GracefulStop() as stop:  # a Ctrl-C: keep serving until rank 0 has saved its checkpoint
        try:
            status = served.serve()
        except RankLost as exc:
            raise RankLost(f"{exc}; {_resume_hint(cfg)}") from None
    if status == FAILED:
        message = agree(None, info)
        raise AgreedError(message or "rank 0 failed")
    if status == ABORTED:
        raise KeyboardInterrupt
    _say(f"rank {info.rank} scored {served.frames} frames")
    return TrainResult(Path(str(cfg.out)), 0, stop.requested, stop.name)

