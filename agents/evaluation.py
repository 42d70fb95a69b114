"""The work of ``python -m vlmrm.evaluate``: a run's checkpoint, rolled out and scored.

The run, its agent and its (or another) CLIP come from :func:`vlmrm.agents.load.load_run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmrm.agents.checkpoint import AGENT_FILE
from vlmrm.agents.load import load_run, reward_section  # noqa: F401 (reward_section: re-exported)
from vlmrm.agents.rollout import run_episodes
from vlmrm.agents.vec_env import render_fps
from vlmrm.runtime.atomic import atomic_write, atomic_write_json
from vlmrm.video import write_video


def evaluate(settings: Any) -> dict:
    """Run the evaluation of :class:`vlmrm.evaluate.EvaluateSettings`; returns the results."""
    run = load_run(settings.run, settings.checkpoint, device=settings.device,
                   reward_model=settings.reward_model, reward_pretrained=settings.reward_pretrained,
                   goal=getattr(settings, "goal", None), baseline=getattr(settings, "baseline", None))
    with run:
        env = run.base_env
        summary = run_episodes(
            run.agent,
            env,
            settings.episodes,
            deterministic=settings.deterministic,
            reward_model=run.reward,
            keep_frames=settings.video,
            seed=settings.seed,
        )
        ckpt = run.checkpoint
        name = ckpt.parent.name if ckpt.name == AGENT_FILE else ckpt.stem
        out = Path(settings.out) if settings.out else run.run_dir / "eval" / name
        results = {
            "run": str(run.run_dir.resolve()),
            "checkpoint": str(run.checkpoint.resolve()),
            "deterministic": settings.deterministic,
            "reward_model": run.reward_config.get("model") if run.reward is not None else None,
            "reward_pretrained": run.reward_config.get("pretrained") if run.reward is not None else None,
            "goal": run.goal,
            **summary.as_dict(),
        }
        if settings.video:
            frames = [f for ep in summary.episodes for f in ep.frames]
            fps = render_fps(env)
            results["video"] = str(atomic_write(out / "episodes.mp4", lambda tmp: write_video(tmp, frames, fps=fps)))
        results["results_file"] = str(atomic_write_json(out / "results.json", results))
        return results

