"""``python -m vlmrm.evaluate run=<dir>``: roll out a trained agent from a checkpoint.

Usage::

    python -m vlmrm.evaluate run=runs/CartPole-pole-upright-20240101-120000
    python -m vlmrm.evaluate run=<dir> checkpoint=128000 episodes=10 deterministic=false
    python -m vlmrm.evaluate run=<dir> reward_model=ViT-L-14/laion2b_s32b_b82k   # score with another CLIP

Runs ``episodes`` episodes (deterministic actions by default) of the checkpoint's policy
in the run's environment and reports the ground-truth return, the CLIP return (the run's
reward model, or ``reward_model=<spec>``; ``reward_model=none`` skips it) and the success
rate where the env defines success. Writes ``<run>/eval/<checkpoint>/episodes.mp4`` and
``results.json`` (or under ``out=<dir>``).

Settings (``key=value``): run (required), checkpoint (last | step | file), episodes (5),
deterministic (true), video (true), seed (0), reward_model (run's | spec | none),
device (auto), out (null).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

# torchvision (via vlmrm) must be imported before any MuJoCo EGL context exists.
import torchvision  # noqa: F401, I001
from omegaconf import OmegaConf

from vlmrm.errors import ConfigError, WeightsNotFoundError


@dataclass
class EvalArgs:
    """Settings of ``python -m vlmrm.evaluate`` (see the module docstring)."""

    run: str | None = None
    checkpoint: str = "last"
    episodes: int = 5
    deterministic: bool = True
    video: bool = True
    seed: int = 0
    reward_model: str | None = "run"
    device: str = "auto"
    out: str | None = None


def parse_args(argv: list[str]) -> EvalArgs:
    """``key=value`` arguments → :class:`EvalArgs`, with one-line errors."""
    from omegaconf.errors import OmegaConfBaseException

    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"expected key=value, got {arg!r} (e.g. run=runs/<name> episodes=5)")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(EvalArgs), OmegaConf.from_dotlist(argv))
    except OmegaConfBaseException as exc:
        msg = str(exc).strip().splitlines()[0]
        raise ConfigError(f"bad setting: {msg} (valid: {', '.join(EvalArgs.__dataclass_fields__)})") from None
    args = EvalArgs(**OmegaConf.to_container(merged))
    if not args.run:
        raise ConfigError("run=<run directory> is required (a directory made by python -m vlmrm.train)")
    if args.episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {args.episodes}")
    return args


def evaluate(args: EvalArgs) -> dict:
    """Run the evaluation; returns the results written to ``results.json``."""
    from vlmrm.agents.builders import build_reward_model, load_agent
    from vlmrm.agents.checkpoint import find_checkpoint
    from vlmrm.agents.config import goal_prompt
    from vlmrm.agents.rollout import run_episodes, write_video
    from vlmrm.agents.vec_env import check_env_factory, env_factory, render_fps

    run_dir = Path(args.run)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"run={run_dir}: no config.yaml there; pass a directory made by python -m vlmrm.train")
    cfg = OmegaConf.load(cfg_path)
    ckpt = find_checkpoint(run_dir, args.checkpoint)
    env = check_env_factory(env_factory(cfg.env))
    try:
        model = load_agent(str(ckpt), cfg.agent.algo, device=args.device)
        spec = args.reward_model
        reward_cfg = OmegaConf.to_container(cfg.reward)
        if spec in (None, "none", "null"):
            reward_cfg["model"] = None
        elif spec != "run":
            reward_cfg["model"] = spec
        goal = goal_prompt(cfg.env.goal_template, cfg.goal)
        reward_model = build_reward_model(reward_cfg, goal, cfg.get("baseline"))
        summary = run_episodes(
            model,
            env,
            args.episodes,
            deterministic=args.deterministic,
            reward_model=reward_model,
            keep_frames=args.video,
            seed=args.seed,
        )
        out = Path(args.out) if args.out else run_dir / "eval" / ckpt.stem
        out.mkdir(parents=True, exist_ok=True)
        results = {
            "run": str(run_dir),
            "checkpoint": str(ckpt),
            "deterministic": args.deterministic,
            "reward_model": reward_cfg.get("model"),
            "goal": goal,
            **summary.as_dict(),
        }
        if args.video:
            frames = [f for ep in summary.episodes for f in ep.frames]
            results["video"] = str(write_video(out / "episodes.mp4", frames, render_fps(env)))
        (out / "results.json").write_text(json.dumps(results, indent=2))
        results["results_file"] = str(out / "results.json")
        return results
    finally:
        env.close()


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.evaluate``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        results = evaluate(parse_args(argv))
    except (ConfigError, WeightsNotFoundError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    print(
        f"{results['episodes']} episodes of {Path(results['checkpoint']).name}: "
        f"ground-truth return {_fmt(results['gt_return'])}, CLIP return {_fmt(results['clip_return'])}, "
        f"success rate {_fmt(results['success_rate'])}, length {_fmt(results['length'])}"
    )
    if "video" in results:
        print(f"video: {results['video']}")
    print(f"results: {results['results_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
