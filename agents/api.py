"""Training from Python: the command line's config, composed from the same overrides.

::

    import vlmrm

    cfg = vlmrm.compose_train_config(["env=CartPole", "reward=tiny", "total_steps=300"])
    cfg.agent.learning_rate = 1e-3             # a plain OmegaConf config: edit it freely
    result = vlmrm.train_agent(cfg)            # or vlmrm.train_agent(["env=CartPole", ...])
    run = vlmrm.load_run(result.run_dir)       # agent, reward model and env, ready to step

:func:`train_agent` runs exactly what ``python -m vlmrm.train`` runs (a config edited in
Python is checked again first); Ctrl-C saves a checkpoint and returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from vlmrm.agents.config import compose_train_config, validate_train_config

if TYPE_CHECKING:
    from vlmrm.agents.runner import TrainResult
    from vlmrm.runtime.stop import GracefulStop


def train_agent(config: DictConfig | Sequence[str] = (), stop: GracefulStop | None = None) -> TrainResult:
    """Train (or resume) a run from a composed config or from ``key=value`` overrides.

    Returns a :class:`~vlmrm.agents.runner.TrainResult` (``run_dir``, ``steps``,
    ``interrupted``, ``final_eval``).
    """
    from vlmrm.agents.runner import train

    if isinstance(config, DictConfig):
        cfg, argv = validate_train_config(config), None
    else:
        argv = list(config)
        cfg = compose_train_config(argv)
    return train(cfg, argv, stop)
