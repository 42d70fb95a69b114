"""``python -m vlmrm.train``: train an SB3 agent on a CLIP reward.

Usage::

    python -m vlmrm.train env=Humanoid goal="kneeling" reward=vit-bigg-14 reward.alpha=0.5 seed=3
    python -m vlmrm.train env=CartPole reward=tiny total_steps=2000        # offline smoke run
    python -m vlmrm.train env=CartPole reward=ground_truth                 # the env's own reward
    python -m vlmrm.train resume=runs/Humanoid-kneeling-20240101-120000    # continue a run
    python -m vlmrm.train env=Acrobot-v1 goal="the tip swung high" baseline="an acrobot"   # any Gymnasium id
    python -m vlmrm.train -m seed=0,1,2 reward.alpha=0,0.5                 # a sweep: one run each
    python -m vlmrm.train env=CartPole --cfg job                           # print the config only
    torchrun --standalone --nproc-per-node=4 -m vlmrm.train env=Humanoid reward.distributed=true  # CLIP on 4 GPUs

Settings are ``key=value`` overrides of the config tree in ``configs/`` (``train.yaml``
and the groups ``env/``, ``agent/``, ``reward/``), composed with Hydra; ``--help`` lists
every key with its docstring (:mod:`vlmrm.agents.settings`). The settings are checked
before torch is imported; the job itself runs in :mod:`vlmrm.agents.runner`.

Exit status: 0 done, 2 bad configuration, 130 stopped by a signal (Ctrl-C, SIGTERM,
SIGUSR1/SIGUSR2: a checkpoint was saved, ``resume=`` continues; the shell's convention for
an interrupted command, shared by every command that saves what it can resume from) or
aborted (a second Ctrl-C).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from vlmrm.agents.config import group_options, resolve_config
from vlmrm.agents.settings import TrainSettings
from vlmrm.cli.args import Command, print_text, report_error, run, wants_help
from vlmrm.errors import ConfigError, VLMRMError, WeightsNotFoundError

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
        "env= also takes any Gymnasium id (Acrobot-v1, module:Env-v0; goal= required; the agent\n"
        "follows the action space: sac for continuous, dqn for discrete actions).\n"
        "env.* and agent.* are documented in their group files; agent.<key> is any argument\n"
        "of the SB3 class; agent.config=hparams.yml reads an rl_zoo3 hyper-parameter file.\n"
        "A run writes <out>/<env>-<goal>-<time>/: config.yaml, tb/, videos/, checkpoints/.\n"
        "Ctrl-C or SIGTERM saves a checkpoint; resume=<run> continues it. Periodic evaluations keep\n"
        "checkpoints/best.zip (+ best.json) by eval.best_metric; evaluate it with checkpoint=best.\n"
        "Several GPUs/processes: torchrun --standalone --nproc-per-node=N -m vlmrm.train ...\n"
        "reward.distributed=true keeps envs and agent on rank 0 and splits every CLIP scoring batch\n"
        "over the ranks (gloo); without torchrun it falls back to one process, with a notice.\n"
        "Hydra flags: -m (a sweep: seed=0,1,2 reward.alpha=0,0.5 runs every combination, one run\n"
        "each, then a summary table; quoted prompts sweep: \"goal='a b','c, d'\"; goal_file=FILE\n"
        "sweeps its lines); --cfg job prints the resolved config and trains nothing."
    )


COMMAND = Command(
    prog="python -m vlmrm.train",
    settings=TrainSettings,
    summary=_summary,  # computed by --help: it lists the group files
    examples=(
        'python -m vlmrm.train env=Humanoid goal="kneeling" reward=vit-bigg-14 reward.alpha=0.5 seed=3',
        "python -m vlmrm.train env=CartPole reward=tiny total_steps=2000",
        "python -m vlmrm.train env=CartPole reward=ground_truth",
        "python -m vlmrm.train resume=runs/quickstart total_steps=2e6",
        'python -m vlmrm.train env=Pendulum-v1 agent=td3 goal="a pendulum pointing up" baseline="a pendulum"',
        "python -m vlmrm.train -m env=CartPole reward=tiny total_steps=300 seed=0,1",
        "python -m vlmrm.train -m env=CartPole reward=tiny seed=0,1,2 launcher=submitit_local launcher.parallel=2",
        "python -m vlmrm.train env=CartPole --cfg job",
        "torchrun --standalone --nproc-per-node=4 -m vlmrm.train env=Humanoid reward.distributed=true",
    ),
    parser=lambda argv: _parse(argv),
)


def _parse(argv: list[str]) -> tuple[DictConfig, list[str]]:
    """The run config; a ``resume=`` of a run another process is writing is refused first,
    in a second, before the config checks import torch and SB3."""
    from vlmrm.runtime.lock import check_free

    resume = [a.split("=", 1)[1].strip().strip("'\"") for a in argv if a.startswith("resume=")]
    if resume and resume[-1] not in ("", "null", "None"):
        check_free(resume[-1])
    return resolve_config(argv), list(argv)


def train(cfg: DictConfig, argv: list[str] | None = None, stop: GracefulStop | None = None) -> TrainResult:
    """Run (or resume) the job of a composed config: :func:`vlmrm.agents.runner.train`
    (under torchrun with ``reward.distributed=true``, on every rank:
    :func:`vlmrm.agents.distributed_reward.train_job`)."""
    from vlmrm.agents.distributed_reward import train_job

    return train_job(cfg, argv, stop)


def _run(args: tuple[DictConfig, list[str]]) -> int:
    """Train; 130 when a signal stopped the run after saving its checkpoint (as ``tune``,
    ``tta`` and ``caption.train`` do). A sweep's job reads the result, not this status."""
    cfg, argv = args
    return 130 if _train_or_explain(cfg, argv).interrupted else 0


def _print_config(args: tuple[DictConfig, list[str]]) -> int:
    from omegaconf import OmegaConf

    print_text(OmegaConf.to_yaml(args[0]).rstrip())
    return 0


def _flags(argv: list[str]) -> tuple[bool, str | None, list[str]]:
    """Hydra's flags: ``-m``/``--multirun`` and ``--cfg job|all`` (``-c``); the rest."""
    multirun, cfg, rest = False, None, []
    it = iter(argv)
    for arg in it:
        if arg in ("-m", "--multirun"):
            multirun = True
        elif arg in ("--cfg", "-c"):
            cfg = next(it, "")
        elif arg.startswith("--cfg="):
            cfg = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if cfg is not None and cfg not in ("job", "all"):
        raise ConfigError(f"--cfg {cfg or '(nothing)'}: use --cfg job (the resolved config; no Hydra runtime here)")
    return multirun, cfg, rest


def _print_sweep_configs(argv: list[str]) -> int:
    """``-m ... --cfg job``: each job's resolved config; nothing runs and nothing is written."""
    from vlmrm.sweep.cli import text_keys
    from vlmrm.sweep.expand import expand_sweep
    from vlmrm.sweep.settings import split_sweep_args

    _, _, rest = split_sweep_args(argv)
    jobs = expand_sweep(rest, text_keys())
    configs = [resolve_config(job.argv) for job in jobs]  # every job checked before printing
    for job, cfg in zip(jobs, configs, strict=True):
        print_text(f"# job {job.index}: {job.label}")
        _print_config((cfg, job.argv))
    return 0


def run_job(argv: list[str]) -> tuple[int, TrainResult | None]:
    """One job of a sweep (:mod:`vlmrm.sweep`): the exit status and the run's result.

    The command's own argument layer and error policy, in this process.
    """
    results: list[TrainResult] = []

    def body(args: tuple[DictConfig, list[str]]) -> int:
        results.append(_train_or_explain(*args))
        return 0

    status = run(COMMAND, argv, body)
    return status, results[0] if results else None


def _train_or_explain(cfg: DictConfig, argv: list[str]) -> TrainResult:
    try:
        return train(cfg, argv)
    except WeightsNotFoundError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise VLMRMError(f"{first} For an offline smoke run use reward=tiny.") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.train`` / ``vlmrm train``; returns the exit status.

    The argument layer's policy (:func:`vlmrm.cli.args.run`): ``--help`` and every
    settings error answer before torch is imported; one ``error:`` line and status 2 for a
    bad setting or missing weights, 130 after a signal stopped the run (its checkpoint saved)
    or aborted it (a second Ctrl-C). Hydra's ``-m``
    (a sweep, :mod:`vlmrm.sweep`, with ``launcher=`` basic|submitit_local|submitit_slurm) and ``--cfg job`` (print the resolved config,
    train nothing) work as Hydra users expect.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        multirun, show_config, rest = _flags(args)
    except ConfigError as exc:
        report_error(exc, shared=True)
        return 2
    if multirun and show_config is not None and not wants_help(rest):
        command = replace(COMMAND, parser=lambda a: a)
        return run(command, rest, _print_sweep_configs)
    if multirun:  # the shared sweep entry of the argument layer (vlmrm.sweep)
        return run(COMMAND, ["-m", *rest], _run)
    return run(COMMAND, rest, _print_config if show_config else _run)


if __name__ == "__main__":
    raise SystemExit(main())
