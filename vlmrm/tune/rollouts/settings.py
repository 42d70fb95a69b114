"""Settings of ``python -m vlmrm.tune.rollouts`` (torch-free: ``--help`` and errors answer at once)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlmrm.checks import check_integers, check_out_dir, integer
from vlmrm.cli.vocabulary import RunSettings
from vlmrm.errors import ConfigError

#: The policy kinds of :data:`vlmrm.envs.controllers.POLICIES` (that package imports torch,
#: so the settings name them here; a test keeps the two equal).
POLICIES = ("random", "scripted")
SPLITS = ("train", "eval")


@dataclass
class RolloutSettings(RunSettings):
    """Every setting of ``python -m vlmrm.tune.rollouts`` (``key=value``)."""

    env: str = "CartPole"
    """Short name (CartPole, MountainCar) or a registered gymnasium id."""
    labels: str = ""
    """Predicate YAML, or a default's name; default: the env's shipped predicates."""
    out: str = "runs/rollouts"
    """Output folder (runs/ is git-ignored)."""
    episodes: int = integer(200, minimum=1)
    """Episodes in all (train + eval)."""
    policies: str = "random,scripted"
    """Episodes go round-robin over these (comma list of random, scripted)."""
    noise: str = "0.0,0.6"
    """Scripted policy: per-episode random-action probability, uniform in [lo, hi] ('p' or 'lo,hi')."""
    max_steps: int = integer(200, minimum=1)
    """Steps per episode at most."""
    stride: int = integer(2, minimum=1)
    """Keep every stride-th frame (consecutive frames are near duplicates)."""
    size: int = integer(64, minimum=8)
    """Frames are square, size x size (vlmrm-tiny: 64; ViT-B-32: 224)."""
    eval_fraction: float = 0.2
    """Fraction of episodes held out (by episode)."""
    max_per_caption: int = integer(0)
    """Cap frames per caption and split (0: no cap), balances classes."""
    ranked_size: int = integer(4, minimum=2)
    """Images per goal-ranking set."""
    ranked_sets: int = integer(0)
    """Goal-ranking sets per split (0: one per ranked_size labelled frames)."""
    overwrite: bool = False
    """Replace an existing dataset in out."""
    progress: bool = True
    """Print what the rollouts did while they run (the final summary is always printed)."""

    def validate(self) -> RolloutSettings:
        """Check every setting (no torch imported); each problem is one :class:`ConfigError` line."""
        check_integers(self)
        if not 0.0 <= self.eval_fraction < 1.0 or math.isnan(self.eval_fraction):
            raise ConfigError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if not self.out:
            raise ConfigError("out=... is required")
        check_out_dir(self.out)
        self.policy_kinds  # noqa: B018 - parse to check
        self.noise_range  # noqa: B018
        return self

    @property
    def policy_kinds(self) -> list[str]:
        """``policies`` as a list of kinds."""
        kinds = [p.strip() for p in str(self.policies).split(",") if p.strip()]
        bad = [k for k in kinds if k not in POLICIES]
        if not kinds or bad:
            raise ConfigError(f"policies must be a comma list of {POLICIES}, got {self.policies!r}")
        return kinds

    @property
    def noise_range(self) -> tuple[float, float]:
        """``noise`` as ``(lo, hi)`` probabilities."""
        text = self.noise
        try:
            vals = [float(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"noise must be 'p' or 'lo,hi' probabilities, got {text!r}") from None
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2 or not all(0.0 <= v <= 1.0 for v in vals) or vals[0] > vals[1]:
            raise ConfigError(f"noise must be 'p' or 'lo,hi' with 0 <= lo <= hi <= 1, got {text!r}")
        return vals[0], vals[1]


#: The name this class had before every settings class ended in ``Settings``.
RolloutConfig = RolloutSettings
