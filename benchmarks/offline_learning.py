"""End to end, offline: tune a CLIP reward on env rollouts, train an agent on it, check it learned.

On a machine with no downloadable CLIP weights this is the one way to show that an agent
really learns from a CLIP reward: the seeded random ``vlmrm-tiny`` CLIP is fine-tuned on
frames of the environment captioned by predicates of the env state, and an agent is then
trained on the goal *sentence* through ``vlmrm.train``. Per seed:

1. ``vlmrm.tune.rollouts``: random + noisy scripted rollouts, captions from the env's
   default predicates (or ``--labels``), held-out episodes for evaluation;
2. ``vlmrm.tune``: contrastive fine-tuning of the whole tiny model on frame–caption
   pairs, then a preference stage (``--stage2``, default Bradley–Terry on the
   goal-vs-baseline pairs and goal-distance rankings);
3. the reward's rank agreement with the truth on held-out frames, with
   :func:`vlmrm.diagnostics.diagnose`: Spearman of the reward (the training reward:
   goal, baseline and α of the env config) with minus the goal distance (CartPole:
   ``-|pole angle|``). Reported on the held-out episodes of the dataset balanced by
   caption (the headline figure: a balancing controller spends most of its time within
   0.03 rad of upright, where frames differ by less than a pixel), on all their frames,
   and on fresh unbalanced rollouts;
4. ``vlmrm.train`` (PPO, ``reward=tiny`` pointed at the tuned weights) on the goal
   sentence, and the same agent on the ground-truth reward with the same budget
   (``--arms``; see below for the controls);
5. ground-truth returns of the deterministic policies on gymnasium's own env
   (``CartPole-v1``: +1 per step until the pole falls, at most 500), and of a uniform
   random policy, over the same evaluation seeds.

Controls (``--arms``). CartPole ends an episode when the pole falls, so *any* positive
per-step reward teaches the agent to survive, whatever its shape: ``untuned`` (the
random ``vlmrm-tiny``, whose reward is unrelated to the angle) is that control. The
``*_centred`` arms train with ``reward.center=true``: the trainer subtracts the reward's
mean over random-policy frames of the env (EPIC's canonical form: the same reward up to
shaping, with no bonus for being alive), so only a reward that ranks upright frames above
that average can teach balancing: ``clip_centred`` should still learn and
``untuned_centred`` should not. MountainCar ends an episode at the flag, where a positive
per-step reward would make arriving a loss: its env file centres by default and treats
the flag state as absorbing (``reward.terminal=absorbing``: a terminated episode's last
reward is paid on until the time limit, so circling below the flag earns less than
reaching it), so its ``clip`` arm is already centred (``clip_centred`` is the same run).

Agents: rl-zoo's settings (constant schedules) through ``agent.<key>=`` overrides. CartPole
uses PPO rather than the config's DQN: the reference DQN setting starts learning after
75k steps, far beyond a CPU budget, while PPO learns CartPole in 100k steps in a few
minutes. MountainCar uses SAC with gSDE (50k steps), rewards relabelled per episode.

Pendulum-v1 is not built in: it shows the loop on a plain gymnasium id. Training uses
``env=Pendulum-v1`` with the goal and baseline of its :data:`ENVS` entry (SAC, rl-zoo's
learning rate, 20k steps); the rollouts need ``info["state"]`` and a controller, which
``benchmarks/pendulum_swingup.py`` adds (a wrapper with the angle, an energy-pumping
swing-up with a PD stabiliser), and ``benchmarks/pendulum_predicates.yaml`` captions the
frames by the angle (goal distance ``|θ|/π``).

Usage::

    python benchmarks/offline_learning.py                    # CartPole, seed 0 (< 20 min on 2 CPU cores)
    python benchmarks/offline_learning.py --seeds 0,1,2
    python benchmarks/offline_learning.py --arms clip,gt,untuned,clip_centred,untuned_centred
    python benchmarks/offline_learning.py --reuse --arms clip_centred   # reuse data + tuned weights
    python benchmarks/offline_learning.py --env MountainCar --arms clip,gt,clip_centred
    python benchmarks/offline_learning.py --env Pendulum-v1
    python benchmarks/offline_learning.py --env MountainCar --train reward.scale=10   # every arm
    python benchmarks/offline_learning.py --env MountainCar --arms gt \
        --arm centred clip reward.terminal=end --arm absorbing clip reward.terminal=absorbing

Trainer settings. ``--train KEY=VALUE ...`` passes ``vlmrm.train`` settings (the same
``key=value`` vocabulary as ``python -m vlmrm.train``) to every arm's training, after the
script's own. ``--arm NAME BASE [KEY=VALUE ...]`` (repeatable) adds an arm called ``NAME``:
the arm ``BASE`` (one of the names above) with its own extra settings, so that variants
of one reward (centring, terminal value, offset, scale) are trained and evaluated side by
side by one invocation, on the same dataset, tuned weights and evaluation episodes.
``--parallel N`` trains N arms at once in worker processes (each an ordinary run folder).
The MountainCar investigation of ``benchmarks/RESULTS.md`` (centring, terminal value,
offset, scale) is one such invocation::

    python benchmarks/offline_learning.py --env MountainCar --seeds 0 --parallel 3 --arms gt \
        --arm centred clip reward.center=true reward.terminal=end \
        --arm absorbing clip reward.center=true reward.terminal=absorbing \
        --arm offset_0.9 clip reward.center=true reward.terminal=end reward.offset=0.9 \
        --arm scale_10 clip reward.center=true reward.terminal=end reward.scale=10 \
        --arm uncentred clip reward.center=false reward.terminal=end

Output: one line per seed, then a table of every arm (per seed: ground-truth return, its
share of the ``gt`` arm's, the centring offset, the arm's settings, training time), then
``offline_learning: clip_return=<x> random_return=<y> gt_return=<z>`` (means over seeds);
per-seed figures go to ``<out>/<env>/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vlmrm  # noqa: E402  (torchvision before any GL context)

#: Per env: gymnasium's own id for the ground-truth evaluation, the agent (rl-zoo's
#: settings for the env, constant schedules), sub-envs, the RL budget and rollout length.
ENVS: dict[str, dict[str, Any]] = {
    "CartPole": {
        "gym_id": "CartPole-v1",
        "algo": "ppo",
        "agent": {
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "learning_rate": 1.0e-3,
            "ent_coef": 0.0,
        },
        "n_envs": 8,
        "rl_steps": 100_000,
        "rollout_steps": 200,
    },
    "MountainCar": {
        "gym_id": "MountainCarContinuous-v0",
        "algo": "sac",
        "agent": {
            "learning_rate": 3.0e-4,
            "buffer_size": 50_000,
            "batch_size": 512,
            "ent_coef": 0.1,
            "train_freq": 32,
            "gradient_steps": 32,
            "gamma": 0.9999,
            "tau": 0.01,
            "learning_starts": 0,
            "use_sde": True,
            "policy_kwargs": {"log_std_init": -3.67, "net_arch": [64, 64]},
        },
        "n_envs": 1,
        "rl_steps": 50_000,
        "rollout_steps": 400,  # the pumping controller needs ~100-300 steps to reach the flag
    },
    # gymnasium's own env (not built in): trained as ``env=Pendulum-v1`` with these prompts;
    # its rollouts come from ``rollout_support`` (a module beside this script, see ROLLOUT_SUPPORT).
    "Pendulum-v1": {
        "gym_id": "Pendulum-v1",
        "algo": "sac",
        # rl-zoo's learning rate; [64, 64] networks, about half the time per step of SB3's
        # default [256, 256] here, and enough for a 3-number state
        "agent": {"learning_rate": 1.0e-3, "policy_kwargs": {"net_arch": [64, 64]}},
        "n_envs": 1,
        "rl_steps": 20_000,
        "rollout_steps": 200,  # the env's time limit; the swing-up takes ~50-100 steps
        "rollout_episodes": 200,
        "size": 64,  # rollout frames at vlmrm-tiny's input size (see pendulum_swingup.py)
        "goal": "a pendulum pointing straight up",
        "baseline": "a pendulum",
        "rollout_support": "pendulum_swingup",
    },
}
ARMS = ("clip", "gt", "untuned", "clip_centred", "untuned_centred")
#: Characters an arm's name may use (it names the arm's run folder).
ARM_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class Arm:
    """One agent to train: ``base`` (an entry of :data:`ARMS`) plus extra trainer settings."""

    name: str
    base: str
    train: tuple[str, ...] = ()

    @property
    def tuned(self) -> bool:
        """Whether the arm's reward is the tuned CLIP (``clip*`` bases)."""
        return self.base.startswith("clip")
#: What a ``rollout_support`` module of an env without a package controller defines:
#: ``register()`` (registers a gymnasium id of the env that puts its state in
#: ``info["state"]``, and returns it), ``PREDICATES`` (the predicate file captioning its
#: frames) and ``CONTROLLER`` (``action(state, action_space)``, a policy reaching the goal).
ROLLOUT_SUPPORT = ("register", "PREDICATES", "CONTROLLER")


def say(msg: str) -> None:
    print(f"[offline_learning] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- reward


@dataclass
class RewardBuilderPatch:
    """Which reward models training built (their names contain the weights file's path)."""

    loaded: list[str] = field(default_factory=list)


@contextlib.contextmanager
def reward_weights_support() -> Iterator[RewardBuilderPatch]:
    """Record which reward models ``vlmrm.train`` builds.

    ``vlmrm.agents.builders.build_reward_model`` (which loads ``reward.pretrained``) is
    wrapped for the duration of the block, both in :mod:`vlmrm.agents.builders` and
    wherever it was imported by name (:mod:`vlmrm.train`). The wrapper records the name of
    every model built (names of models loaded from a file contain the file's path), so the
    caller can check that training really scored frames with the tuned weights. It changes
    nothing else: centring is the trainer's own ``reward.center=true``.
    """
    from vlmrm.agents import builders

    original = builders.build_reward_model
    patch = RewardBuilderPatch()

    def build_reward_model(reward: Any, goal: Any, baseline: Any):
        model = original(reward, goal, baseline)
        if model is not None:
            patch.loaded.append(model.clip.name)
        return model

    modules = [builders, *(m for m in (sys.modules.get("vlmrm.train"),) if m is not None)]
    patched = [m for m in modules if getattr(m, "build_reward_model", None) is original]
    for m in patched:
        m.build_reward_model = build_reward_model
    try:
        yield patch
    finally:
        for m in patched:
            m.build_reward_model = original


def env_overrides(env: str) -> list[str]:
    """``env=<env>``, with the goal and baseline of an env that has no config file of its own."""
    spec = ENVS[env]
    return [f"env={env}", *(f"{k}={spec[k]}" for k in ("goal", "baseline") if k in spec)]


def agent_overrides(env: str, base_agent: Any) -> list[str]:
    """The env's agent (:data:`ENVS`) as ``vlmrm.train`` overrides: ``agent=``, ``n_envs=``, keys.

    ``base_agent`` is the ``agent`` section the overrides apply to. Keys that
    ``configs/agent/<algo>.yaml`` does not list are appended with Hydra's "+"; a mapping
    (policy_kwargs) that is not empty there (the env file's) is deleted and re-added, since
    Hydra merges it key by key; into an empty one it is merged (the same result, and the
    trainer takes no ``~key`` override with an env id that has no config file).
    """
    spec = ENVS[env]
    overrides = [f"agent={spec['algo']}", f"n_envs={spec['n_envs']}"]
    for k, v in spec["agent"].items():
        if isinstance(v, dict) and base_agent.get(k):
            overrides += [f"~agent.{k}", f"+agent.{k}={_hydra_value(v)}"]
        else:
            overrides.append(f"{'' if k in base_agent else '+'}agent.{k}={_hydra_value(v)}")
    return overrides


def env_reward_settings(env: str) -> tuple[str, str, float]:
    """Goal prompt, baseline and α that ``vlmrm.train env=<env> reward=tiny`` uses."""
    from vlmrm.agents.config import compose_train_config, goal_prompt

    cfg = compose_train_config([*env_overrides(env), "reward=tiny"])
    return goal_prompt(cfg.env.goal_template, cfg.goal), cfg.baseline, float(cfg.reward.alpha)


# --------------------------------------------------------------------------- rollouts


def rollout_support(env: str) -> Any | None:
    """The ``rollout_support`` module of an env (a file beside this script), else ``None``."""
    name = ENVS[env].get("rollout_support")
    if name is None:
        return None
    if name not in sys.modules:  # loaded by path: this script is also run with runpy
        import importlib.util

        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    module = sys.modules[name]
    missing = [k for k in ROLLOUT_SUPPORT if not hasattr(module, k)]
    if missing:
        raise RuntimeError(f"{name}.py defines no {missing}")
    return module


@contextlib.contextmanager
def scripted_controller(action: Any | None) -> Iterator[None]:
    """Rollouts' ``scripted`` policy is ``action(info["state"], action_space)`` in this block.

    :func:`vlmrm.envs.controllers.make_policy` knows the package's envs only; for the
    block it is wrapped (as :func:`reward_weights_support` wraps the reward builder) so
    that a scripted episode uses ``action`` with the same per-episode noise: a random
    action with probability ``noise``, drawn from the rollout's generator. ``None``
    changes nothing.
    """
    if action is None:
        yield
        return
    from vlmrm.envs import controllers

    original = controllers.make_policy

    def make_policy(kind: str, env: Any, rng: np.random.Generator, noise: float = 0.0):
        if kind != "scripted":
            return original(kind, env, rng, noise)
        space = env.action_space

        def scripted(obs: Any, info: dict) -> Any:
            if rng.random() < noise:
                return controllers.random_action(space, rng)
            return action(np.asarray(info["state"], dtype=np.float64), space)

        return scripted

    controllers.make_policy = make_policy
    try:
        yield
    finally:
        controllers.make_policy = original


# --------------------------------------------------------------------------- diagnostics


def _read_states(path: Path, split: str | None = None) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if split is None or r["split"] == split]


def reward_agreement(
    reward: vlmrm.CLIPReward,
    data_dir: Path,
    split: str | None = "eval",
    *,
    balance: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Spearman/Pearson/EPIC of the reward with minus the goal distance, on a dataset's frames.

    ``balance=True`` keeps equally many frames of every caption (a random subset of the
    larger classes): a balancing controller spends most of its time within 0.03 rad of
    upright, where frames differ by less than a pixel, and without balancing the
    statistic would mostly measure the order of those indistinguishable frames.
    """
    import imageio.v3 as iio

    from vlmrm.diagnostics import diagnose

    rows = _read_states(data_dir / "states.csv", split)
    if balance:
        by: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by.setdefault(r["caption"], []).append(i)
        n = min(len(v) for v in by.values())
        rng = np.random.default_rng(seed)
        keep = sorted(i for v in by.values() for i in rng.choice(v, size=n, replace=False).tolist())
        rows = [rows[i] for i in keep]
    frames = np.stack([iio.imread(data_dir / r["image"]) for r in rows])
    truth = -np.array([float(r["goal_distance"]) for r in rows])
    d = diagnose(reward(frames), truth, label="-goal_distance")
    return {"spearman": d.spearman, "pearson": d.pearson, "epic": d.epic_distance, "n": d.n}


# --------------------------------------------------------------------------- RL


def arm_overrides(
    env: str,
    arm: Arm,
    seed: int,
    steps: int,
    out_dir: Path,
    size: int,
    weights: Path | None,
    train: Sequence[str] = (),
) -> list[str]:
    """The ``vlmrm.train`` overrides of one arm's agent on a CLIP reward or the ground truth.

    ``*_centred`` bases add ``reward.center=true``; the others keep the env's default
    (MountainCar's env file centres, CartPole's does not). The arm's own settings
    (``--arm``) and then ``train`` (``--train``, every arm's) come last, so they win.
    """
    from vlmrm.agents.config import compose_train_config

    overrides = [
        *env_overrides(env),
        f"seed={seed}",
        f"total_steps={steps}",
        f"env.render_size=[{size},{size}]",
        "eval.episodes=0",
        "eval.video=false",
        "eval.every=0",
        "checkpoint_every=0",
        "progress=false",
        f"out={out_dir}",
        f"run_name={arm.name}-seed{seed}",
    ]
    base = compose_train_config([*env_overrides(env), f"agent={ENVS[env]['algo']}", "reward=tiny"])
    overrides += agent_overrides(env, base.agent)
    if arm.base == "gt":
        overrides.append("reward=ground_truth")
    else:
        overrides.append("reward=tiny")
        if weights is not None:
            prefix = "" if "pretrained" in base.reward else "+"
            overrides.append(f"{prefix}reward.pretrained='{weights}'")
        if arm.base.endswith("_centred"):
            overrides.append("reward.center=true")
    return [*overrides, *arm.train, *train]


def check_arms(args: argparse.Namespace) -> str | None:
    """``None`` when every arm's trainer settings compose, else the first problem, one line.

    Composes each arm's config as training will (no model is built, nothing is trained),
    so a misspelt ``--train``/``--arm`` key fails before the dataset and tuning stages.
    """
    from vlmrm.agents.config import compose_train_config
    from vlmrm.errors import ConfigError

    weights = tuned_weights(args.out, args.env, 0, args.stage2)
    for arm in args.arms:
        overrides = arm_overrides(args.env, arm, 0, args.rl_steps, Path(args.out), args.size,
                                  weights if arm.tuned else None, args.train)
        try:
            compose_train_config(overrides)
        except ConfigError as exc:
            return f"arm {arm.name}: {exc}"
    return None


def _train_agent(
    overrides: list[str], run_dir: Path, steps: int, reuse: bool = False
) -> tuple[Path, float | None, bool]:
    """Train one arm's agent through ``vlmrm.train`` (``overrides``: :func:`arm_overrides`).

    Returns the agent file, the centring offset the trainer measured (``None`` when the
    reward was not centred), and whether the agent was reused: with ``reuse``, a finished
    run of the same settings (its saved config, the measured offset aside) is evaluated
    again, not retrained.
    """
    from vlmrm.agents.checkpoint import latest_checkpoint
    from vlmrm.agents.config import compose_train_config
    from vlmrm.train import train

    cfg = compose_train_config(overrides)
    finished = _finished_run(run_dir, cfg, steps) if reuse else None
    if finished is not None:
        return finished[0], finished[1], True
    if (run_dir / "checkpoints").exists():
        import shutil

        shutil.rmtree(run_dir)
    result = train(cfg, overrides)
    offset = cfg.reward.get("offset") if cfg.reward.get("center") else None  # set by the trainer
    return latest_checkpoint(result.run_dir).agent_path, offset, False


def _finished_run(run_dir: Path, cfg: Any, steps: int) -> tuple[Path, float | None] | None:
    """``(agent file, offset)`` of a run in ``run_dir`` that trained ``cfg`` to ``steps``, else ``None``."""
    from omegaconf import OmegaConf

    from vlmrm.agents.checkpoint import latest_checkpoint
    from vlmrm.errors import ConfigError

    try:
        ckpt = latest_checkpoint(run_dir, warn=lambda msg: None)
        saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    except (ConfigError, OSError):  # no run, no checkpoint (NoCheckpoint is a ConfigError)
        return None
    wanted = {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "resume"}
    offset = saved["reward"].get("offset")
    saved["reward"]["offset"] = wanted["reward"].get("offset")
    if saved != wanted or ckpt.step < steps:
        return None
    say(f"{run_dir.name}: reusing the finished agent (step {ckpt.step})")
    return ckpt.agent_path, offset


def _hydra_value(v: Any) -> str:
    """A Python value in Hydra's override grammar (dicts/lists without Python's quotes)."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_hydra_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_hydra_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def evaluate_policy(model: Any, gym_id: str, episodes: int, seed: int) -> list[float]:
    """Ground-truth returns of ``model`` (deterministic) or a uniform random policy (``None``)."""
    import gymnasium as gym

    env = gym.make(gym_id)
    env.action_space.seed(seed)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            if model is None:
                action = env.action_space.sample()
            else:
                action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


# --------------------------------------------------------------------------- one seed


@dataclass
class SeedResult:
    seed: int
    returns: dict[str, float] = field(default_factory=dict)
    return_std: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)


def _build_datasets(args: argparse.Namespace, seed: int, data: Path, heldout: Path) -> None:
    """Stage 1: the tuning dataset, and fresh unbalanced rollouts (all eval, another seed).

    An env with a ``rollout_support`` module is rolled out as its id with ``info["state"]``,
    captioned by its predicate file (unless ``--labels``) and driven by its controller.
    """
    from vlmrm.tune.rollouts.dataset import build_rollout_dataset
    from vlmrm.tune.rollouts.settings import RolloutSettings

    support = rollout_support(args.env)
    env, labels = args.env, args.labels
    if support is not None:
        env, labels = support.register(), labels or str(support.PREDICATES)
    common = dict(env=env, labels=labels, size=args.size, max_steps=args.max_steps, overwrite=True)
    with scripted_controller(None if support is None else support.CONTROLLER):
        ds = build_rollout_dataset(
            RolloutSettings(
                out=str(data),
                episodes=args.episodes,
                max_per_caption=args.max_per_caption,
                seed=seed,
                **common,
            )
        )
        say(f"seed {seed}: {ds.summary()}")
        build_rollout_dataset(
            RolloutSettings(
                out=str(heldout),
                episodes=args.heldout_episodes,
                eval_fraction=0.0,
                seed=10_000 + seed,
                **common,
            )
        )


def _tune_stages(
    args: argparse.Namespace, seed: int, data: Path, contrastive_ckpt: Path, tuned_ckpt: Path, reuse: bool
) -> None:
    """Stage 2: contrastive tuning, then the preference stage (``--stage2``)."""
    from vlmrm.tune import train as tune

    common = {
        "model": "vlmrm-tiny",
        "device": "cpu",
        "seed": seed,
        "resume": "false",
        "tensorboard": False,
        "weight_decay": 0.0,
        "log_every": 0,
        "progress": bool(args.verbose),
    }
    if not (reuse and contrastive_ckpt.is_file()):
        tune(
            loss="contrastive",
            data=str(data / "train" / "captions.jsonl"),
            eval_data=str(data / "eval" / "captions.jsonl"),
            steps=args.contrastive_steps,
            lr=args.lr,
            warmup_steps=args.warmup,
            batch_size=32,
            out=str(contrastive_ckpt.parent),
            **common,
        )
    if args.stage2 != "none" and not (reuse and tuned_ckpt.is_file()):
        tune(
            loss=args.stage2,
            pretrained=str(contrastive_ckpt),
            data=str(data / "train" / "preferences.jsonl"),
            eval_data=str(data / "eval" / "preferences.jsonl"),
            steps=args.stage2_steps,
            lr=args.lr,
            warmup_steps=args.warmup,
            beta=args.beta,
            pairs="all",
            batch_size=64,
            out=str(tuned_ckpt.parent),
            **common,
        )


def _agreement(
    res: SeedResult, args: argparse.Namespace, data: Path, heldout: Path, weights: dict[str, Path | None]
) -> None:
    """Stage 3: rank agreement of the training reward on held-out frames."""
    goal, baseline, alpha = env_reward_settings(args.env)
    for name, path in weights.items():
        clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", pretrained=path)
        reward = vlmrm.CLIPReward(clip, goal=goal, baseline=baseline, alpha=alpha)
        res.agreement[name] = reward_agreement(reward, data, "eval", balance=True, seed=res.seed)
        res.agreement[f"{name}_all"] = reward_agreement(reward, data, "eval")
        res.agreement[f"{name}_natural"] = reward_agreement(reward, heldout, None)
    a = res.agreement
    say(
        f"seed {res.seed}: Spearman(reward, -goal distance) on held-out episodes: tuned "
        f"{a['tuned']['spearman']:.3f} caption-balanced (n={a['tuned']['n']}), "
        f"{a['tuned_all']['spearman']:.3f} all frames, {a['tuned_natural']['spearman']:.3f} fresh "
        f"unbalanced rollouts; contrastive only {a['contrastive']['spearman']:.3f}; untuned "
        f"{a['untuned']['spearman']:.3f}"
    )


def _agents(res: SeedResult, args: argparse.Namespace, root: Path, weights: Path) -> None:
    """Stages 4-5: train each arm's agent and measure its ground-truth return.

    With ``--parallel N`` the arms train in N worker processes (each an ordinary
    ``vlmrm.train`` run in its own folder), so a list of arms shares the machine's cores.
    """
    spec = ENVS[args.env]
    eval_seed = 1_000_000 + 1000 * res.seed
    rnd = evaluate_policy(None, spec["gym_id"], args.eval_episodes, eval_seed)
    res.returns["random"], res.return_std["random"] = float(np.mean(rnd)), float(np.std(rnd))
    jobs = [(args, arm, res.seed, root / "runs", weights if arm.tuned else None) for arm in args.arms]
    if args.parallel > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")  # a fresh torch per worker (no forked OpenMP state)
        with ProcessPoolExecutor(min(args.parallel, len(jobs)), mp_context=ctx) as pool:
            outcomes = list(pool.map(_run_arm, *zip(*jobs, strict=True)))
    else:
        outcomes = [_run_arm(*job) for job in jobs]
    for arm, (rets, offset, seconds) in zip(args.arms, outcomes, strict=True):
        if offset is not None:
            res.offsets[arm.name] = float(offset)
        res.returns[arm.name], res.return_std[arm.name] = float(np.mean(rets)), float(np.std(rets))
        res.seconds[f"rl_{arm.name}"] = seconds
        say(
            f"seed {res.seed}: {arm.name} agent ground-truth return "
            f"{res.returns[arm.name]:.1f} ± {res.return_std[arm.name]:.1f}"
        )


def _run_arm(
    args: argparse.Namespace, arm: Arm, seed: int, runs: Path, weights: Path | None
) -> tuple[list[float], float | None, float]:
    """Train one arm's agent and evaluate it: (ground-truth returns, offset, seconds)."""
    from stable_baselines3 import PPO, SAC

    t = time.perf_counter()
    torch.set_num_threads(max(1, args.threads))
    spec = ENVS[args.env]
    importlib.import_module("vlmrm.train")  # so that the builder it imported by name is patched too
    with reward_weights_support() as patch:
        overrides = arm_overrides(args.env, arm, seed, args.rl_steps, runs, args.size, weights, args.train)
        ckpt, offset, reused = _train_agent(overrides, runs / f"{arm.name}-seed{seed}", args.rl_steps,
                                            reuse=args.reuse)
        if weights is not None and not reused and not any(os.fspath(weights) in n for n in patch.loaded):
            raise RuntimeError(
                f"the {arm.name} agent was not trained with {weights} (reward models: {patch.loaded})"
            )
    model = {"ppo": PPO, "sac": SAC}[spec["algo"]].load(ckpt, device="cpu")
    rets = evaluate_policy(model, spec["gym_id"], args.eval_episodes, 1_000_000 + 1000 * seed)
    return rets, offset, time.perf_counter() - t


def tuned_weights(out: str | os.PathLike, env: str, seed: int = 0, stage2: str = "bt") -> Path:
    """Where :func:`tune_reward` writes the tuned reward CLIP of ``env`` and ``seed`` under ``out``."""
    root = Path(out) / env / f"seed{seed}"
    stage = f"tune-{stage2}" if stage2 != "none" else "tune-contrastive"
    return root / stage / "model.safetensors"


def tune_reward(args: argparse.Namespace, seed: int) -> tuple[SeedResult, Path]:
    """Stages 1-3 for one seed: dataset, tuning, rank agreement; returns them and the weights."""
    res = SeedResult(seed)
    root = Path(args.out) / args.env / f"seed{seed}"
    data, heldout = root / "data", root / "heldout"
    contrastive_ckpt = tuned_weights(args.out, args.env, seed, "none")
    tuned_ckpt = tuned_weights(args.out, args.env, seed, args.stage2)
    reuse = (
        args.reuse and (data / "manifest.json").is_file() and (heldout / "manifest.json").is_file()
    )
    t = time.perf_counter()
    if not reuse:
        _build_datasets(args, seed, data, heldout)
    res.seconds["dataset"] = time.perf_counter() - t
    t = time.perf_counter()
    _tune_stages(args, seed, data, contrastive_ckpt, tuned_ckpt, reuse)
    res.seconds["tune"] = time.perf_counter() - t
    weights = {"untuned": None, "contrastive": contrastive_ckpt, "tuned": tuned_ckpt}
    _agreement(res, args, data, heldout, weights)
    return res, tuned_ckpt


def run_seed(args: argparse.Namespace, seed: int) -> SeedResult:
    """Every stage for one seed (with ``--reuse``, the data and weights of an earlier run)."""
    t_all = time.perf_counter()
    res, tuned_ckpt = tune_reward(args, seed)
    _agents(res, args, Path(args.out) / args.env / f"seed{seed}", tuned_ckpt)
    res.seconds["total"] = time.perf_counter() - t_all
    return res


def _fmt(x: float) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.1f}"


def arms_table(results: Sequence[SeedResult], arms: Sequence[Arm], episodes: int) -> str:
    """A Markdown table of every arm and seed: return, share of ``gt``, offset, settings, time."""
    lines = [
        f"| arm | settings | seed | ground-truth return (mean ± std, {episodes} episodes) "
        "| share of gt | offset | train + eval s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in [Arm("random", "random"), *arms]:
        for r in results:
            if arm.name not in r.returns:
                continue
            ret, gt = r.returns[arm.name], r.returns.get("gt")
            share = f"{100 * ret / gt:.1f}%" if gt is not None and gt > 0 and arm.name != "gt" else ""
            settings = " ".join([arm.base, *arm.train]) if arm.name != "random" else "uniform random actions"
            offset = r.offsets.get(arm.name)
            secs = r.seconds.get(f"rl_{arm.name}")
            lines.append(
                f"| {arm.name} | `{settings}` | {r.seed} | {_fmt(ret)} ± {_fmt(r.return_std[arm.name])} "
                f"| {share} | {'' if offset is None else f'{offset:.3f}'} "
                f"| {'' if secs is None else f'{secs:.0f}'} |"
            )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--env", default="CartPole", choices=sorted(ENVS))
    p.add_argument("--seeds", default="0", help="comma list, e.g. 0,1,2")
    p.add_argument(
        "--labels", default="", help="predicate YAML (default: the env's shipped predicates)"
    )
    p.add_argument(
        "--episodes", type=int, default=None,
        help="rollout episodes for the tuning dataset (default per env: 300, Pendulum-v1 200)",
    )
    p.add_argument(
        "--heldout-episodes", type=int, default=40, help="fresh rollouts for the unbalanced check"
    )
    p.add_argument(
        "--max-steps", type=int, default=None, help="steps per rollout episode (default per env)"
    )
    p.add_argument(
        "--max-per-caption", type=int, default=1500, help="frames per caption and split (balance)"
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="frame size of rollouts and of the agent's frames (resized to 64 by vlmrm-tiny; "
        "default per env: 128, Pendulum-v1 64 for the rollouts, its own 500 in training)",
    )
    p.add_argument("--contrastive-steps", type=int, default=1000)
    p.add_argument("--stage2", default="bt", choices=("bt", "dpo", "ipo", "listwise", "none"))
    p.add_argument("--stage2-steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3, help="both tuning stages (cosine decay)")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps of both stages")
    p.add_argument(
        "--beta", type=float, default=1.0, help="DPO/IPO β (scores are τ·cos, τ = 1/0.07)"
    )
    p.add_argument(
        "--rl-steps", type=int, default=None, help="agent steps per arm (default per env)"
    )
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument(
        "--arms", default=None,
        help=f"agents to train, comma list from {ARMS} (default clip,gt; none with only --arm)",
    )
    p.add_argument(
        "--arm", action="append", nargs="+", default=[], metavar=("NAME", "BASE KEY=VALUE"),
        help="an extra arm NAME: the arm BASE (from --arms' list) with its own vlmrm.train "
        "settings, e.g. --arm absorbing clip reward.terminal=absorbing (repeatable)",
    )
    p.add_argument(
        "--train", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="vlmrm.train settings for every arm's agent, as on its command line "
        "(e.g. reward.scale=10 agent.learning_rate=1e-3); they come after each arm's own",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core CPU)"
    )
    p.add_argument(
        "--parallel", type=int, default=1,
        help="arms trained at once, in worker processes (each with --threads torch threads)",
    )
    p.add_argument("--out", default="runs/offline_learning")
    p.add_argument(
        "--reuse", action="store_true",
        help="reuse the dataset, tuned weights and finished agents (same settings) already in --out"
    )
    p.add_argument("--verbose", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with the per-env defaults filled in (``arms`` as a list)."""
    p = _parser()
    args = p.parse_args(argv)
    names = "clip,gt" if args.arms is None and not args.arm else (args.arms or "")
    arms = [Arm(a.strip(), a.strip()) for a in names.split(",") if a.strip()]
    bad = [a.name for a in arms if a.base not in ARMS]
    if bad:
        p.error(f"unknown arm(s) {bad}; choose from {ARMS}")
    for name, *rest in args.arm:
        if not rest:
            p.error(f"--arm {name}: give NAME BASE [KEY=VALUE ...], e.g. --arm {name} clip reward.scale=10")
        if not set(name) <= ARM_NAME_CHARS:
            p.error(f"--arm {name!r}: a name of letters, digits, '_', '.' and '-' (it names a run folder)")
        if rest[0] not in ARMS:
            p.error(f"--arm {name}: unknown base arm {rest[0]!r}; choose from {ARMS}")
        arms.append(Arm(name, rest[0], tuple(rest[1:])))
    twice = sorted({a.name for a in arms if [b.name for b in arms].count(a.name) > 1})
    if twice:
        p.error(f"arm name(s) {twice} given twice; give each arm its own NAME")
    settings = [kv for a in arms for kv in a.train] + list(args.train)
    malformed = [kv for kv in settings if "=" not in kv.lstrip("~+") and not kv.startswith("~")]
    if malformed:
        p.error(f"trainer settings {malformed} are not KEY=VALUE (e.g. reward.terminal=absorbing)")
    args.arms = arms
    if args.rl_steps is None:
        args.rl_steps = ENVS[args.env]["rl_steps"]
    if args.max_steps is None:
        args.max_steps = ENVS[args.env]["rollout_steps"]
    if args.episodes is None:
        args.episodes = ENVS[args.env].get("rollout_episodes", 300)
    if args.size is None:
        args.size = ENVS[args.env].get("size", 128)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    problem = check_arms(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))

    results = []
    for seed in seeds:
        r = run_seed(args, seed)
        results.append(r)
        secs = ", ".join(f"{k} {v:.0f}s" for k, v in r.seconds.items())
        a = r.agreement
        print(
            f"seed {seed}: spearman={a['tuned']['spearman']:.3f} (all held-out "
            f"{a['tuned_all']['spearman']:.3f}, fresh rollouts {a['tuned_natural']['spearman']:.3f}, "
            f"untuned {a['untuned']['spearman']:.3f}) "
            + " ".join(f"{k}_return={_fmt(v)}" for k, v in r.returns.items())
            + f" [{secs}]",
            flush=True,
        )
    out = Path(args.out) / args.env
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(
            {"args": vars(args), "seeds": [r.__dict__ for r in results]}, indent=2, default=str
        )
    )

    if args.arms:
        print(arms_table(results, args.arms, args.eval_episodes), flush=True)

    def mean(arm: str) -> float:
        vals = [r.returns[arm] for r in results if arm in r.returns]
        return float(np.mean(vals)) if vals else float("nan")

    print(
        f"offline_learning: clip_return={_fmt(mean('clip'))} random_return={_fmt(mean('random'))} "
        f"gt_return={_fmt(mean('gt'))}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
