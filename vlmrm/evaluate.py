"""``python -m vlmrm.evaluate run=<dir>``: roll out a trained agent from a checkpoint.

Usage::

    python -m vlmrm.evaluate run=runs/CartPole-pole-upright-20240101-120000
    python -m vlmrm.evaluate run=<dir> checkpoint=128000 episodes=10 deterministic=false
    python -m vlmrm.evaluate run=<dir> checkpoint=best                 # the best periodic evaluation's agent
    python -m vlmrm.evaluate run=<dir> reward_model=ViT-L-14/laion2b_s32b_b82k   # score with another CLIP
    python -m vlmrm.evaluate run=<dir> reward_pretrained=tuned.safetensors   # the run's CLIP, other weights

Runs ``episodes`` episodes (deterministic actions by default) of the checkpoint's policy
in the run's environment and reports the ground-truth return, the CLIP return (the run's
reward model, or ``reward_model=<spec>``; ``reward_model=none`` skips it) and the success
rate where the env defines success. Writes ``<run>/eval/<checkpoint>/episodes.mp4`` and
``results.json`` (or under ``out=<dir>``). The work is done by
:func:`vlmrm.agents.evaluation.evaluate`; this module parses and prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrm.checks import (
    check_device,
    check_int,
    check_model_spec,
    check_out_dir,
    check_prompts_setting,
    check_text,
)
from vlmrm.cli.args import Command, entry_point
from vlmrm.errors import ConfigError

#: ``reward_model=`` values that are no CLIP spec.
RUN_REWARD = "run"
NO_REWARD = ("none", "null")


@dataclass
class EvaluateSettings:
    """Settings of ``python -m vlmrm.evaluate``."""

    run: str | None = None
    """A run folder made by python -m vlmrm.train (required)."""
    checkpoint: str = "last"
    """Which checkpoint: last, best (checkpoints/best.zip, the best periodic evaluation),
    a step number (128000), or a checkpoint file."""
    episodes: int = 5
    """How many episodes."""
    deterministic: bool = True
    """Deterministic actions (false: sample from the policy)."""
    video: bool = True
    """Write episodes.mp4 (all episodes, one after the other)."""
    seed: int = 0
    """Random seed: episode k is reset with seed + k."""
    reward_model: str | None = RUN_REWARD
    """The CLIP that scores the frames: run (the run's reward model), a CLIP spec (ARCH/TAG,
    ARCH with reward_pretrained=, hf-hub:org/repo, vlmrm-tiny), or none."""
    reward_pretrained: str | None = None
    """Weights for the reward model: an open_clip tag or a local weights file (e.g. a tuned
    checkpoint), for a bare ARCH reward_model or, with reward_model=run, for the run's own
    architecture."""
    goal: Any = None
    """Score with this goal instead of the run's: a prompt or a list of prompts (averaged),
    goal='[kneeling,"on its knees"]'; the run's env.goal_template is applied to each."""
    baseline: Any = None
    """Score with this baseline instead of the run's: a prompt or a list (averaged)."""
    device: str = "auto"
    """Torch device of the agent: auto (cuda when present, else cpu), cpu, cuda, cuda:N."""
    out: str | None = None
    """Output folder (default: <run>/eval/<checkpoint>/)."""

    def validate(self) -> None:
        """Torch-free checks (the run folder itself is read by the evaluation)."""
        if not self.run:
            raise ConfigError("run=<run directory> is required (a directory made by python -m vlmrm.train)")
        check_text("checkpoint", str(self.checkpoint))
        self.episodes = check_int("episodes", self.episodes, 1)
        self.seed = check_int("seed", self.seed, 0)
        self.device = check_device(self.device)
        if self.out is not None:
            check_out_dir(self.out)
        spec = self.reward_model
        if spec is None or str(spec).lower() in NO_REWARD:
            self.reward_model = None
        elif spec != RUN_REWARD:
            self.reward_model = check_model_spec(spec, self.reward_pretrained, "reward_model")
        for key in ("goal", "baseline"):
            if getattr(self, key) is not None:
                setattr(self, key, check_prompts_setting(key, getattr(self, key)))
        if self.reward_model is None and (self.goal is not None or self.baseline is not None):
            raise ConfigError("goal=/baseline= are prompts of a reward model, but reward_model=none scores nothing")
        if self.reward_pretrained is not None and self.reward_model is None:
            raise ConfigError(
                "reward_pretrained= gives weights to a reward model, but reward_model=none scores nothing"
            )




def evaluate(settings: EvaluateSettings) -> dict:
    """Run the evaluation; returns the results written to ``results.json``."""
    from vlmrm.agents.evaluation import evaluate as run_evaluation

    return run_evaluation(settings)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _evaluate_and_print(settings: EvaluateSettings) -> int:
    results = evaluate(settings)
    print(
        f"{results['episodes']} episodes of {Path(results['checkpoint']).name}: "
        f"ground-truth return {_fmt(results['gt_return'])}, CLIP return {_fmt(results['clip_return'])}, "
        f"success rate {_fmt(results['success_rate'])}, length {_fmt(results['length'])}"
    )
    if "video" in results:
        print(f"video: {results['video']}")
    print(f"results: {results['results_file']}")
    return 0


COMMAND = Command(
    prog="python -m vlmrm.evaluate",
    settings=EvaluateSettings,
    summary=(
        "Roll out a trained agent from a checkpoint of a run: deterministic episodes in the\n"
        "run's environment, their video, the ground-truth and CLIP returns and the success rate."
    ),
    examples=(
        "python -m vlmrm.evaluate run=runs/quickstart episodes=5",
        "python -m vlmrm.evaluate run=runs/quickstart checkpoint=128000 deterministic=false",
        "python -m vlmrm.evaluate run=runs/quickstart checkpoint=best episodes=10",
        "python -m vlmrm.evaluate run=runs/quickstart reward_model=ViT-L-14/laion2b_s32b_b82k",
        "python -m vlmrm.evaluate run=runs/quickstart reward_model=ViT-B-32 reward_pretrained=tuned.safetensors",
        "python -m vlmrm.evaluate run=runs/quickstart reward_pretrained=runs/tune/model.safetensors",
    ),
)

main = entry_point(COMMAND, _evaluate_and_print)


if __name__ == "__main__":
    raise SystemExit(main())
