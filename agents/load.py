"""A trained run, back in Python: ``vlmrm.load_run("runs/<run>")``.

:func:`load_run` returns the agent of a checkpoint, the run's CLIP reward model and its
environment, wrapped so that ``env.step`` returns the CLIP reward (the env's own reward
in ``info["original_reward"]``)::

    run = vlmrm.load_run("runs/CartPole-pole-upright-20240101-120000")
    obs, info = run.env.reset(seed=0)
    action, _ = run.agent.predict(obs, deterministic=True)
    obs, clip_reward, terminated, truncated, info = run.env.step(action)

Runs store absolute paths (``vlmrm.train`` resolves them when a run starts), so a run
loads from any working directory. Runs saved before that may hold a relative
``reward.pretrained``: it is looked up from the working directory, then from the run
folder and its parents (where the training command usually ran).
:mod:`vlmrm.agents.evaluation` (``python -m vlmrm.evaluate``) builds on the same pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# torchvision must be imported before any MuJoCo EGL context exists (see vlmrm.envs).
import torchvision  # noqa: F401, I001
from omegaconf import DictConfig, OmegaConf

from vlmrm.agents.builders import build_reward_model, load_agent
from vlmrm.agents.centring import ShiftedReward
from vlmrm.agents.checkpoint import find_checkpoint
from vlmrm.agents.settings import goal_prompt
from vlmrm.agents.vec_env import check_env_factory, env_factory
from vlmrm.errors import ConfigError

#: ``reward_model=`` value meaning "the run's own reward model".
RUN_REWARD = "run"


@dataclass
class LoadedRun:
    """What :func:`load_run` returns; ``close()`` closes the env."""

    run_dir: Path
    config: DictConfig
    checkpoint: Path
    agent: Any
    reward: Any  # a vlmrm.CLIPReward, or None for a ground-truth run / reward_model=None
    env: Any  # the run's env; with a reward, wrapped in vlmrm.CLIPRewardWrapper
    goal: str | None = None
    base_env: Any = None  # the env without the reward wrapper
    reward_config: dict | None = None  # the reward section the CLIP was built from

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> LoadedRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_run_config(run_dir: str | Path, key: str = "run") -> DictConfig:
    """A run folder's ``config.yaml`` (checked: one clear line when missing or damaged), with
    a relative ``reward.pretrained`` made absolute."""
    from vlmrm.agents.checkpoint import read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir, key)
    pretrained = (cfg.get("reward") or {}).get("pretrained")
    if pretrained:
        cfg.reward.pretrained = _find_relative(str(pretrained), run_dir)
    return cfg


def _find_relative(path: str, run_dir: Path) -> str:
    """An absolute path stays; a relative one is looked up from the cwd, the run and its parents."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return str(p.resolve()) if p.exists() else str(p)
    for base in [run_dir.resolve(), *run_dir.resolve().parents][:4]:
        if (base / p).exists():
            return str(base / p)
    if p.suffix in (".safetensors", ".pt", ".bin", ".pth"):
        raise ConfigError(
            f"the run's reward.pretrained={path!r} is a relative path that is not found from here or "
            f"from {run_dir}; pass the file: reward_pretrained=/path/to/{p.name}"
        )
    return path  # an open_clip tag, not a file


def reward_section(run_reward: dict[str, Any], spec: str | None, pretrained: str | None) -> dict[str, Any]:
    """The run's reward section with another CLIP swapped in.

    ``spec="run"`` keeps the run's model (with ``pretrained``: its architecture with those
    weights, e.g. a tuned checkpoint); ``None`` scores nothing; any other spec is that
    CLIP, with ``pretrained`` for a bare architecture.
    """
    reward = dict(run_reward)
    if spec is None:
        reward["model"] = None
    elif spec != RUN_REWARD:
        reward["model"], reward["pretrained"] = spec, pretrained
    elif pretrained is not None:
        model = str(reward.get("model") or "")
        if not model:
            raise ConfigError("this run trained on the ground truth: give reward_model=ARCH with reward_pretrained=")
        arch = model if model.startswith("hf-hub:") else model.split("/", 1)[0]
        reward["model"], reward["pretrained"] = arch, pretrained
    return reward


def _run_shift(reward_cfg: Any, reward: Any) -> Any:
    """The run's reward with its training centring and scale (unchanged when there are none)."""
    offset = float(reward_cfg.get("offset") or 0.0) if reward_cfg.get("center") else 0.0
    scale = float(reward_cfg.get("scale") or 1.0)
    return ShiftedReward(reward, offset, scale) if (offset or scale != 1.0) else reward


def load_run(
    run: str | Path,
    checkpoint: str = "last",
    *,
    device: str = "auto",
    reward_model: str | None = RUN_REWARD,
    reward_pretrained: str | None = None,
    goal: Any = None,
    baseline: Any = None,
) -> LoadedRun:
    """The agent of ``checkpoint`` (``last``, a step, a file), the reward and the env of a run.

    ``reward_model``: ``"run"`` (the run's CLIP; with ``reward_pretrained`` its
    architecture with other weights), any ``load_clip`` spec, or ``None`` (no CLIP: the
    env is returned unwrapped). ``goal``/``baseline`` (a prompt or a list of prompts,
    averaged; the run's ``env.goal_template`` applied to each goal) score with other
    prompts than the run's. The run's own reward (its CLIP and prompts) keeps the run's
    centring and scale (``reward.center``, ``reward.offset``, ``reward.scale``), so it is
    the reward the agent was trained on; another CLIP or other prompts are not shifted.
    """
    import vlmrm

    run_dir = Path(run)
    cfg = load_run_config(run_dir)
    ckpt = find_checkpoint(run_dir, checkpoint)
    env = check_env_factory(env_factory(cfg.env))
    try:
        agent = load_agent(str(ckpt), cfg.agent.algo, device=device)
        reward_cfg = reward_section(OmegaConf.to_container(cfg.reward), reward_model, reward_pretrained)
        own = reward_model == RUN_REWARD and reward_pretrained is None and goal is None and baseline is None
        goal = goal_prompt(cfg.env.goal_template, cfg.goal if goal is None else goal) if reward_cfg.get("model") else None
        reward = build_reward_model(reward_cfg, goal, cfg.get("baseline") if baseline is None else baseline) if goal else None
        if reward is not None and own:
            reward = _run_shift(cfg.reward, reward)
    except BaseException:
        env.close()
        raise
    wrapped = vlmrm.CLIPRewardWrapper(env, reward) if reward is not None else env
    return LoadedRun(run_dir, cfg, ckpt, agent, reward, wrapped, goal, env, reward_cfg)
