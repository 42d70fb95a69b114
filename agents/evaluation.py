"""The work of ``python -m vlmrm.evaluate``: a run's checkpoint, rolled out and scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# torchvision must be imported before any MuJoCo EGL context exists (see vlmrm.envs).
import torchvision  # noqa: F401, I001
from omegaconf import OmegaConf

from vlmrm.agents.builders import build_reward_model, load_agent
from vlmrm.agents.checkpoint import AGENT_FILE, find_checkpoint, read_run_config
from vlmrm.agents.rollout import run_episodes
from vlmrm.agents.settings import goal_prompt
from vlmrm.agents.vec_env import check_env_factory, env_factory, render_fps
from vlmrm.runtime.atomic import atomic_write, atomic_write_json
from vlmrm.video import write_video


def reward_section(run_reward: dict[str, Any], spec: str | None, pretrained: str | None) -> dict[str, Any]:
    """The run's reward section with the CLIP ``spec`` swapped in (``"run"``: unchanged)."""
    reward = dict(run_reward)
    if spec is None:
        reward["model"] = None
    elif spec != "run":
        reward["model"] = spec
        reward["pretrained"] = pretrained
    return reward


def evaluate(settings: Any) -> dict:
    """Run the evaluation of :class:`vlmrm.evaluate.EvaluateSettings`; returns the results."""
    run_dir = Path(settings.run)
    cfg = read_run_config(run_dir, "run")
    ckpt = find_checkpoint(run_dir, settings.checkpoint)
    env = check_env_factory(env_factory(cfg.env))
    try:
        model = load_agent(str(ckpt), cfg.agent.algo, device=settings.device)
        reward_cfg = reward_section(OmegaConf.to_container(cfg.reward), settings.reward_model,
                                    settings.reward_pretrained)
        goal = goal_prompt(cfg.env.goal_template, cfg.goal)
        reward_model = build_reward_model(reward_cfg, goal, cfg.get("baseline"))
        summary = run_episodes(
            model,
            env,
            settings.episodes,
            deterministic=settings.deterministic,
            reward_model=reward_model,
            keep_frames=settings.video,
            seed=settings.seed,
        )
        name = ckpt.parent.name if ckpt.name == AGENT_FILE else ckpt.stem
        out = Path(settings.out) if settings.out else run_dir / "eval" / name
        results = {
            "run": str(run_dir),
            "checkpoint": str(ckpt),
            "deterministic": settings.deterministic,
            "reward_model": reward_cfg.get("model"),
            "goal": goal,
            **summary.as_dict(),
        }
        if settings.video:
            frames = [f for ep in summary.episodes for f in ep.frames]
            fps = render_fps(env)
            results["video"] = str(atomic_write(out / "episodes.mp4", lambda tmp: write_video(tmp, frames, fps=fps)))
        results["results_file"] = str(atomic_write_json(out / "results.json", results))
        return results
    finally:
        env.close()
