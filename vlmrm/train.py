"""``python -m vlmrm.train``: train an SB3 agent on a CLIP reward.

Usage::

    python -m vlmrm.train env=Humanoid goal="kneeling" reward=vit-bigg-14 reward.alpha=0.5 seed=3
    python -m vlmrm.train env=CartPole reward=tiny total_steps=2000        # offline smoke run
    python -m vlmrm.train env=CartPole reward=ground_truth                 # the env's own reward
    python -m vlmrm.train resume=runs/Humanoid-kneeling-20240101-120000    # continue a run

Settings are ``key=value`` overrides of the config tree in ``configs/`` (``train.yaml``
and the groups ``env/``, ``agent/``, ``reward/``), composed with Hydra; ``--help`` lists
every key with its docstring (:mod:`vlmrm.agents.settings`). The settings are checked
before torch is imported; the job itself runs in :mod:`vlmrm.agents.runner`.

Exit status: 0 done or stopped cleanly (Ctrl-C/SIGTERM save a checkpoint), 2 bad
configuration, 130 aborted (second Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vlmrm.agents.config import group_options, resolve_config
from vlmrm.agents.settings import TrainSettings
from vlmrm.cli.args import Command, run
from vlmrm.errors import VLMRMError, WeightsNotFoundError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vlmrm.agents.runner import TrainResult
    from vlmrm.runtime.stop import GracefulStop


def _summary() -> str:
    groups = "\n".join(f"  {g}={'|'.join(group_options(g))}" for g in ("env", "agent", "reward"))
    return (
        "Train a Stable-Baselines3 agent on a CLIP reward. Settings are key=value overrides of\n"
        "the config tree (configs/train.yaml), composed with Hydra; a group picks a file:\n"
        f"{groups}\n"
        "env.* and agent.* are documented in their group files; agent.<key> is any argument\n"
        "of the SB3 class. A run writes <out>/<env>-<goal>-<time>/: config.yaml, tb/, videos/,\n"
        "checkpoints/. Ctrl-C or SIGTERM saves a checkpoint; resume=<run> continues it."
    )


COMMAND = Command(
    prog="python -m vlmrm.train",
    settings=TrainSettings,
    summary=_summary,  # computed by --help: it lists the group files
    examples=(
        'python -m vlmrm.train env=Humanoid goal="kneeling" reward=vit-bigg-14 reward.alpha=0.5 seed=3',
        "python -m vlmrm.train env=CartPole reward=tiny total_steps=2000",
        "python -m vlmrm.train env=CartPole reward=ground_truth",
        "python -m vlmrm.train resume=runs/<run> total_steps=2e6",
    ),
    parser=lambda argv: (resolve_config(argv), list(argv)),
)


def train(cfg: DictConfig, argv: list[str] | None = None, stop: GracefulStop | None = None) -> TrainResult:
    """Run (or resume) the job of a composed config: :func:`vlmrm.agents.runner.train`."""
    from vlmrm.agents.runner import train as run_job

    return run_job(cfg, argv, stop)


def _run(args: tuple[DictConfig, list[str]]) -> int:
    cfg, argv = args
    try:
        train(cfg, argv)
    except WeightsNotFoundError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VLMRMError(f"{first} For an offline smoke run use reward=tiny.") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.train`` / ``vlmrm train``; returns the exit status.

    The argument layer's policy (:func:`vlmrm.cli.args.run`): ``--help`` and every
    settings error answer before torch is imported; one ``error:`` line and status 2 for a
    bad setting or missing weights, 130 for an abort (a second Ctrl-C).
    """
    return run(COMMAND, argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
