"""The best agent of a run: ``checkpoints/best.zip`` and ``checkpoints/best.json``.

The newest checkpoint is not the best policy: RL returns go up and down, and with a
CLIP reward the last agent may have drifted. Every periodic evaluation (``eval.every``,
``eval.episodes``; and the final one) compares its mean metric with the best so far and,
when it is strictly higher, saves the evaluated agent as ``best.zip`` with ``best.json``
beside it::

    {"step": 96000, "metric": "clip_return", "value": 41.7, "episodes": 5,
     "size": 123456, "sha256": "..."}

The metric (``eval.best_metric``) is the mean CLIP return, the mean ground-truth return or
the success rate of the evaluation episodes. Both files are written atomically, the agent
first: ``best.json`` names the size and checksum of the ``best.zip`` it describes, so a
kill between the two renames is recognised (:func:`read_best`). A resumed run starts from
the recorded best value and only replaces it with a better one; checkpoint pruning
(``keep_checkpoints``) only touches ``step_<N>/`` folders, never these files.
``python -m vlmrm.evaluate run=<run> checkpoint=best`` evaluates it.

This module imports nothing heavy: the settings check the metric name with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmrm.checks import check_choice
from vlmrm.errors import ConfigError

BEST_AGENT = "best.zip"
BEST_INFO = "best.json"
#: ``eval.best_metric`` values; ``auto`` is clip_return with a CLIP reward, else gt_return.
BEST_METRICS = ("auto", "clip_return", "gt_return", "success")
#: The attribute of an evaluation summary that each metric reads.
SUMMARY_FIELD = {"clip_return": "clip_return", "gt_return": "gt_return", "success": "success_rate"}


def resolve_best_metric(metric: Any, has_clip_reward: bool) -> str:
    """The metric ``eval.best_metric`` names, ``auto`` resolved (torch-free)."""
    metric = check_choice("eval.best_metric", metric, BEST_METRICS)
    if metric == "auto":
        return "clip_return" if has_clip_reward else "gt_return"
    if metric == "clip_return" and not has_clip_reward:
        raise ConfigError(
            "eval.best_metric=clip_return needs a CLIP reward, and reward=ground_truth has none; "
            "use eval.best_metric=gt_return (or success)"
        )
    return metric


def check_metric_reported(metric: str, env: Any) -> None:
    """``success`` needs an env that reports ``info["success"]``: say so before training."""
    if metric != "success":
        return
    _, info = env.reset()
    if "success" not in info:
        _, _, _, _, info = env.step(env.action_space.sample())
    if "success" not in info:
        name = getattr(getattr(env, "spec", None), "id", None) or type(env.unwrapped).__name__
        raise ConfigError(
            f"eval.best_metric=success: {name} reports no success (no info['success']); "
            "use eval.best_metric=clip_return or gt_return"
        )


def best_paths(run_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(checkpoints/best.zip, checkpoints/best.json)`` of a run."""
    ckpt = Path(run_dir) / "checkpoints"
    return ckpt / BEST_AGENT, ckpt / BEST_INFO


def read_best(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``best.json`` of a run, checked against ``best.zip``; ``None`` if there is no best yet.

    Raises :class:`ConfigError` naming the problem when either file is missing, damaged
    or does not describe the other (a truncated ``best.zip``, a save cut short).
    """
    from vlmrm.runtime.units import sha256, short_error

    agent, info_path = best_paths(run_dir)
    if not agent.exists() and not info_path.exists():
        return None
    where = f"{Path(run_dir) / 'checkpoints'}"
    if not info_path.is_file():
        raise ConfigError(f"{where}/{BEST_AGENT} has no {BEST_INFO} beside it; the best checkpoint is incomplete")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        int(info["step"]), float(info["value"]), str(info["metric"]), int(info["size"]), str(info["sha256"])
    except Exception as exc:  # noqa: BLE001 - truncated or hand-edited JSON: damaged either way
        raise ConfigError(f"{where}/{BEST_INFO} is damaged ({short_error(exc)})") from None
    if not agent.is_file():
        raise ConfigError(f"{where}/{BEST_AGENT} is missing (named by {BEST_INFO})")
    if agent.stat().st_size != int(info["size"]) or sha256(agent) != info["sha256"]:
        raise ConfigError(
            f"{where}/{BEST_AGENT} is damaged or truncated: its size or checksum differs from {BEST_INFO} "
            f"({agent.stat().st_size} bytes, expected {info['size']})"
        )
    return info


def best_agent_path(run_dir: str | os.PathLike) -> Path:
    """The verified ``best.zip`` of a run (what ``checkpoint=best`` loads)."""
    info = read_best(run_dir)
    if info is None:
        raise ConfigError(
            f"{Path(run_dir) / 'checkpoints'} holds no {BEST_AGENT}: it is written by periodic evaluations "
            "(eval.every > 0, eval.episodes > 0); use checkpoint=last"
        )
    return best_paths(run_dir)[0]


class BestAgent:
    """Keep ``best.zip``/``best.json`` of a run by ``metric`` (an :class:`EvalVideo` ``on_eval`` hook).

    The recorded best of an earlier (resumed) session is the bar to beat; if it was chosen
    by another metric, or its files are damaged, ``warn`` says so and the next evaluation
    replaces it.
    """

    def __init__(self, run_dir: str | os.PathLike, metric: str, warn: Callable[[str], None] = print) -> None:
        self.run_dir = Path(run_dir)
        self.metric = metric
        self.warn = warn
        self.best: dict[str, Any] | None = None
        try:
            previous = read_best(self.run_dir)
        except ConfigError as exc:
            warn(f"{exc}; the next evaluation replaces it")
            previous = None
        if previous is not None and previous["metric"] != metric:
            warn(f"checkpoints/{BEST_AGENT} was chosen by {previous['metric']}, this run uses {metric}: "
                 "the next evaluation replaces it")
            previous = None
        self.best = previous

    def __call__(self, model: Any, summary: Any) -> bool:
        """Save ``model`` as the best agent if ``summary`` beats the best so far; whether it did."""
        from vlmrm.runtime.atomic import atomic_write, atomic_write_json
        from vlmrm.runtime.units import sha256

        value = getattr(summary, SUMMARY_FIELD[self.metric])
        if value is None:
            return False
        value = float(value)
        if self.best is not None and not value > float(self.best["value"]):
            return False
        agent, info_path = best_paths(self.run_dir)
        agent.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(agent, model.save)
        info = {"step": int(model.num_timesteps), "metric": self.metric, "value": value,
                "episodes": len(summary.episodes), "size": agent.stat().st_size, "sha256": sha256(agent)}
        atomic_write_json(info_path, info)
        self.best = info
        return True
