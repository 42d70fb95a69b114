"""The settings of ``python -m vlmrm.train``: dataclasses whose field docstrings are --help.

The values come from the Hydra composition of ``configs/`` (:mod:`vlmrm.agents.config`);
these classes say which keys exist, what they mean and which values they take, and check
a composed config before anything imports torch or Stable-Baselines3:

* top-level keys (:class:`TrainSettings`), ``reward.*`` (:class:`RewardSettings`, the CLIP
  vocabulary of every command plus the reward's own keys) and ``eval.*``
  (:class:`PeriodicEvalSettings`) are fixed sets: an unknown key is refused with the
  closest known one;
* ``env.*`` and ``agent.*`` are free mappings documented by their group files
  (``configs/env/<name>.yaml``, ``configs/agent/<algo>.yaml``); ``agent.*`` is checked
  against the SB3 class's signature afterwards (:mod:`vlmrm.agents.builders`).

A default of ``null`` on a key marked "(default: the env's)" means the env file decides.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlmrm.agents.best import resolve_best_metric
from vlmrm.checks import (
    check_alpha,
    check_choice,
    check_device,
    check_int,
    check_model_spec,
    check_optional_int,
    check_out_dir,
    check_precision,
    check_prompts_setting,
    check_text,
    resolve_compile,
)
from vlmrm.cli.args import check_keys, flat_keys
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError
from vlmrm.model_spec import render_size_for

#: How CLIP rewards reach the agent (``auto`` is resolved per algorithm by :meth:`TrainSettings.validate`).
RELABEL_MODES = ("auto", "episode", "step", "none")
#: Where episode relabelling runs the reward model (``reward.relabel_worker``).
RELABEL_WORKERS = ("auto", "thread", "process", "off")
#: The SB3 algorithms ``agent.algo`` may name (classes in :mod:`vlmrm.agents.builders`).
ALGORITHM_NAMES = ("sac", "ppo", "dqn", "td3", "ddpg", "a2c")
#: What a terminated episode earns afterwards (see ``reward.terminal``).
TERMINAL_MODES = ("end", "absorbing")
#: Algorithms with a replay buffer, whose rewards can be relabelled after the fact.
OFF_POLICY = frozenset({"sac", "dqn", "td3", "ddpg"})
#: Where the scalars go: TensorBoard always (tb/), Weights & Biases as well with logger=wandb.
LOGGERS = ("tensorboard", "wandb")
#: Keys of earlier versions → their names now (a clear hint instead of "unknown setting").
RENAMED = {"out_dir": "out", "progress_bar": "progress"}


@dataclass
class RewardSettings(ClipSettings):
    """``reward.*``: the CLIP reward model, as loaded by :func:`vlmrm.load_clip`."""

    name: str = "vit-bigg-14"
    """The preset this section came from (reward=<name> picks configs/reward/<name>.yaml)."""
    model: str | None = "ViT-bigG-14/laion2b_s39b_b160k"
    """The CLIP: ARCH/TAG, ARCH with reward.pretrained=, hf-hub:org/repo, vlmrm-tiny (small
    random model for smoke runs), or null to train on the env's own reward
    (reward=ground_truth)."""
    alpha: float | None = None
    """Goal-baseline regularisation in [0, 1] (0: cosine with the goal; > 0 needs a
    baseline) (default: the env's)."""
    compile: Any = False
    """torch.compile the image tower: false, true, or a mode (reduce-overhead, max-autotune)."""
    relabel: str = "auto"
    """How rewards reach the agent: episode (relabel the replay buffer at episode ends,
    off-policy agents), step (score every step in the vector env), none (ground truth),
    auto (episode for sac/td3/ddpg/dqn, step for ppo/a2c)."""
    max_pending_frames: int = 4096
    """Episode relabelling scores its stored frames at least this often."""
    relabel_worker: str = "auto"
    """Where episode relabelling runs the reward model while the envs step: thread (a worker
    thread), process (a process of its own, fed through shared memory: for small reward
    models, whose Python share keeps a thread from running beside the env loop), off (on
    the main thread, before each training phase), auto (if a core is idle when training
    starts: process for a small torch tower on the CPU in a run of 100000 steps or more,
    thread otherwise; else off). The rewards are the same either way."""
    distributed: bool = False
    """Under torchrun: spread every scoring batch over all ranks' CLIP replicas (envs and
    agent stay on rank 0; ranks > 0 only score). Without torchrun (or with one process)
    it falls back to scoring in the one process, with a notice."""
    center: bool | None = None
    """Subtract the mean CLIP reward of random-policy frames (collected when training
    starts), so that a positive reward no longer pays for merely staying alive, nor makes
    reaching a terminal goal a loss (default: the env's; MountainCar: true)."""
    center_frames: int = 1000
    """How many random-policy frames (seeded by seed) measure the centring offset."""
    offset: float | None = None
    """The centring offset; null: measured when the run starts (reward.center=true) and
    saved here, so a resumed run keeps it."""
    scale: float = 1.0
    """Multiplies the CLIP reward (after centring): scale * (reward - offset)."""
    terminal: str | None = None
    """What an episode that *terminates* (not a time-limit truncation) earns afterwards:
    end (nothing), or absorbing (its last state's reward again for every step left until
    the time limit, discounted by the agent's gamma: reaching a terminal goal is then no
    loss against circling near it; episode relabelling, i.e. off-policy agents: with per-step
    scoring it is ignored, with a notice) (default: the env's; MountainCar: absorbing)."""

    def check(self) -> None:
        """Torch-free checks of a CLIP reward section (ground truth: nothing to check)."""
        self.relabel = check_choice("reward.relabel", self.relabel, RELABEL_MODES)
        if not isinstance(self.distributed, bool):
            raise ConfigError(f"reward.distributed must be true or false, got {self.distributed!r}")
        if self.model is None:
            if self.distributed:
                raise ConfigError("reward.distributed=true spreads a CLIP reward over ranks, but "
                                  "reward=ground_truth has none; drop reward.distributed")
            if self.center:
                raise ConfigError("reward.center=true centres a CLIP reward; reward=ground_truth has none (drop it)")
            return
        self.model = check_model_spec(self.model, self.pretrained, "reward.model")
        self.device = check_device(self.device, "reward.device")
        self.precision = check_precision(self.precision, name="reward.precision")
        self.batch_size = check_optional_int("reward.batch_size", self.batch_size, 1)
        self.max_pending_frames = check_int("reward.max_pending_frames", self.max_pending_frames, 1)
        self.relabel_worker = check_choice("reward.relabel_worker", self.relabel_worker, RELABEL_WORKERS)
        if self.distributed and self.relabel_worker in ("thread", "process"):
            raise ConfigError(
                f"reward.relabel_worker={self.relabel_worker} with reward.distributed=true: a "
                "distributed reward's collectives run on the main thread; drop reward.relabel_worker"
            )
        self.check_centring()
        self.terminal = check_choice("reward.terminal", self.terminal or "end", TERMINAL_MODES)
        if self.relabel == "none":
            raise ConfigError("reward.relabel=none needs reward=ground_truth; use episode or step")

    def check_centring(self) -> None:
        """``reward.center``, ``center_frames``, ``offset`` and ``scale``: kinds and ranges."""
        if self.center is None:  # a reward section without the key (runs saved before it existed)
            self.center = False
        if not isinstance(self.center, bool):
            raise ConfigError(f"reward.center must be true or false, got {self.center!r}")
        self.center_frames = check_int("reward.center_frames", self.center_frames, 1)
        for name in ("scale", "offset"):
            value = getattr(self, name)
            if value is None and name == "offset":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"reward.{name} must be a finite number, got {value!r}")
            setattr(self, name, float(value))
        if self.scale == 0:
            raise ConfigError("reward.scale=0 makes every reward 0; use a non-zero factor (default 1)")
        if self.offset is not None and not self.center:
            raise ConfigError("reward.offset is the offset of a centred reward; add reward.center=true, or reward.offset=null")


@dataclass
class PeriodicEvalSettings:
    """``eval.*``: deterministic evaluation episodes (and their videos) during training."""

    every: int | None = None
    """Env steps between evaluations (0: only at the end) (default: the env's)."""
    episodes: int = 1
    """Deterministic episodes per evaluation (0: none)."""
    video: bool = True
    """Write videos/step_<N>.mp4 of the evaluation episodes."""
    best_metric: str = "auto"
    """What checkpoints/best.zip maximises over the evaluations: clip_return, gt_return or
    success (the success rate, for envs that report it); auto: clip_return with a CLIP
    reward, gt_return with reward=ground_truth."""


@dataclass
class WandbSettings:
    """``wandb.*``: the Weights & Biases run of ``logger=wandb`` (WANDB_MODE=offline works)."""

    project: str = "vlmrm"
    """The W&B project."""
    entity: str | None = None
    """The W&B entity (user or team; default: yours)."""
    group: str | None = None
    """Group runs (e.g. the runs of one sweep)."""
    tags: list = field(default_factory=list)
    """Tags of the run, e.g. wandb.tags=[cartpole,smoke]."""
    mode: str | None = None
    """online, offline or disabled (default: WANDB_MODE, else online)."""


@dataclass
class TrainSettings(RunSettings):
    """Every key of ``python -m vlmrm.train`` (groups: ``env=``, ``agent=``, ``reward=``)."""

    env: dict = field(default_factory=dict)
    """The environment section (env=<name> picks configs/env/<name>.yaml): env.id,
    env.episode_length, env.render_size=[w,h] (auto: the reward model's input size, 224 for
    ground truth), env.goal_template, env.camera, env.kwargs,
    env.agent_params.<algo>; see the group files."""
    agent: dict = field(default_factory=dict)
    """The SB3 agent (agent=sac|td3|ddpg|dqn|ppo|a2c; default: the env's, or for any other
    Gymnasium env sac for continuous and dqn for discrete actions): agent.<SB3 argument>=value,
    e.g. agent.learning_rate=3e-4, agent.policy_kwargs.net_arch=[64,64];
    agent.config=hparams.yml reads rl_zoo3-style hyper-parameters first."""
    reward: RewardSettings = field(default_factory=RewardSettings)
    goal: Any = None
    """The task in words, or a list of wordings whose prompt embeddings are averaged
    (goal='[kneeling,"on its knees"]'); each CLIP goal prompt is env.goal_template with
    {goal} replaced (default: the env's)."""
    baseline: Any = None
    """The baseline prompt of goal-baseline regularisation, used when reward.alpha > 0, or a
    list of prompts (averaged) (default: the env's)."""
    total_steps: int | None = None
    """Environment steps, all sub-envs together; 1e6 is accepted (default: the env's)."""
    n_envs: int | None = None
    """Parallel sub-envs; one CLIP model in the main process (default: the env's)."""
    subprocess: bool | None = None
    """Step and render the sub-envs in worker processes (default: the env's)."""
    device: str = "auto"
    """Torch device of the agent: auto (cuda when present, else cpu), cpu, cuda, cuda:N."""
    threads: Any = "auto"
    """Torch CPU threads of the main process (auto: min(4, cores/2, cores - env worker
    processes)); small MLP updates and CLIP calls slow down badly on oversubscribed cores."""
    eval: PeriodicEvalSettings = field(default_factory=PeriodicEvalSettings)
    checkpoint_every: int | None = None
    """Env steps between checkpoints (0: only at the end) (default: the env's)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep in checkpoints/ (0: all)."""
    out: str = "runs"
    """Output folder: a run writes <out>/<env>-<goal>-<time>/ (or <out>/<run_name>/)."""
    run_name: str | None = None
    """A fixed run folder name instead of <env>-<goal>-<time>."""
    resume: str | None = None
    """A run folder: continue from its latest checkpoint (other keys may then change
    total_steps, eval.*, reward.alpha... but not what shapes the saved agent)."""
    verbose: int = 0
    """SB3 verbosity (1 prints its tables)."""
    logger: str = "tensorboard"
    """Where scalars go: tensorboard (tb/), or wandb (Weights & Biases as well as tb/: the
    same scalars, the evaluation videos and the resolved config; see wandb.*)."""
    wandb: WandbSettings = field(default_factory=WandbSettings)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TrainSettings:
        """A settings instance from a composed config (a plain mapping), keys checked."""
        check_keys(cls, sorted(flat_keys(cfg, stop_at=("env", "agent"))))
        data = dict(cfg)
        data["reward"] = RewardSettings(**(cfg.get("reward") or {}))
        data["eval"] = PeriodicEvalSettings(**(cfg.get("eval") or {}))
        data["wandb"] = WandbSettings(**(cfg.get("wandb") or {}))
        return cls(**data)

    def validate(self) -> TrainSettings:
        """Torch-free checks of every value; returns the settings with numbers normalised."""
        self.seed = check_int("seed", self.seed, 0)
        for name, minimum in (("total_steps", 1), ("n_envs", 1), ("checkpoint_every", 0), ("keep_checkpoints", 0), ("verbose", 0)):
            setattr(self, name, check_int(name, getattr(self, name), minimum))
        self.eval.every = check_int("eval.every", self.eval.every, 0)
        self.eval.episodes = check_int("eval.episodes", self.eval.episodes, 0)
        for name, value in (("subprocess", self.subprocess), ("progress", self.progress),
                            ("eval.video", self.eval.video)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        self.device = check_device(self.device)
        if self.threads != "auto":
            self.threads = check_int("threads", self.threads, 1)
        check_out_dir(self.out)
        if self.run_name is not None:
            name = check_text("run_name", self.run_name)
            if "/" in name or name in (".", ".."):
                raise ConfigError(f"run_name must be a plain folder name, got {name!r}")
        check_env_section(self.env)
        self.logger = check_choice("logger", self.logger, LOGGERS)
        if self.logger == "wandb" and importlib.util.find_spec("wandb") is None:
            raise ConfigError("logger=wandb needs the wandb package: pip install wandb (or pip install 'vlmrm[wandb]')")
        if self.wandb.mode is not None:
            self.wandb.mode = check_choice("wandb.mode", self.wandb.mode, ("online", "offline", "disabled"))
        if not isinstance(self.wandb.tags, (list, tuple)):
            self.wandb.tags = [self.wandb.tags]
        if self.reward.model is not None:
            if self.goal is None:
                raise ConfigError(
                    f"goal= is required for env={self.env.get('id')} (the task in words, e.g. "
                    'goal="the pendulum pointing up"), or reward=ground_truth'
                )
            self.goal = check_prompts_setting("goal", self.goal)
            goal_prompt(self.env.get("goal_template"), self.goal)
            if self.baseline is not None:
                self.baseline = check_prompts_setting("baseline", self.baseline)
        self._check_agent()
        self._check_reward()
        # after the reward: frames are drawn at the reward model's input size
        self.env["render_size"] = render_size_for(self.env.get("render_size"), self.reward.model)
        self.eval.best_metric = resolve_best_metric(self.eval.best_metric, self.reward.model is not None)
        return self

    def _check_agent(self) -> None:
        """What can be said of ``agent.*`` without SB3: the algorithm, and one SB3 rule."""
        algo = self.agent.get("algo")
        if algo is None:
            raise ConfigError(f"no agent selected; add agent=<one of {', '.join(ALGORITHM_NAMES)}>")
        if algo not in ALGORITHM_NAMES:
            raise ConfigError(f"unknown agent.algo {algo!r}; choose one of: {', '.join(ALGORITHM_NAMES)}")
        freq = self.agent.get("train_freq")
        if isinstance(freq, (list, tuple)) and len(freq) == 2 and str(freq[1]) == "episode" and self.n_envs > 1:
            raise ConfigError(
                "agent.train_freq=[n, episode] works with n_envs=1 only (an SB3 rule); with several "
                "envs use steps, e.g. agent.train_freq=<episode length>"
            )

    def _check_reward(self) -> None:
        """The reward section, α through :func:`~vlmrm.checks.check_alpha`, ``relabel`` resolved."""
        reward = self.reward
        reward.check()
        if reward.model is None:
            reward.relabel = "none"
            return
        reward.alpha = check_alpha(reward.alpha, has_baseline=bool(self.baseline))
        reward.compile = resolve_compile(reward.compile, "reward.compile")
        algo = self.agent["algo"]
        if reward.relabel == "auto":
            reward.relabel = "episode" if algo in OFF_POLICY else "step"
        if reward.relabel == "episode" and algo not in OFF_POLICY:
            raise ConfigError(
                f"reward.relabel=episode relabels a replay buffer, which {algo} has not; "
                "use an off-policy agent (sac, dqn) or reward.relabel=step"
            )


def check_env_section(env: Mapping[str, Any]) -> None:
    """The keys of ``env.*`` the trainer reads: present, and of the right kind."""
    check_text("env.name", env.get("name"))
    check_text("env.id", env.get("id"))
    if env.get("episode_length") is not None:  # null: the env's registration
        check_int("env.episode_length", env.get("episode_length"), 1)
    size = env.get("render_size")
    if size != "auto":  # auto: resolved to the reward model's input size by TrainSettings.validate
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise ConfigError(f"env.render_size must be [width, height] or auto, got {size!r}")
        for s in size:
            check_int("env.render_size", s, 1)
    if env.get("kwargs") is not None and not isinstance(env["kwargs"], Mapping):
        raise ConfigError(f"env.kwargs must be a mapping, got {env['kwargs']!r}")


def goal_prompt(template: str, goal: str | list[str]) -> str | list[str]:
    """``template.format(goal=goal)``, with a clear error for templates that do not fit.

    A list of goals gives the list of their prompts (the template applied to each).
    """
    if not isinstance(goal, str) and isinstance(goal, Sequence):  # a list (or OmegaConf's ListConfig)
        return [goal_prompt(template, g) for g in check_prompts_setting("goal", list(goal))]
    check_text("env.goal_template", template)
    check_text("goal", goal)
    if "{goal}" not in template:
        raise ConfigError(
            f"env.goal_template must contain '{{goal}}' where the goal goes, got {template!r} "
            "(e.g. 'a humanoid robot {goal}')"
        )
    try:
        return template.format(goal=goal)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"env.goal_template {template!r} may contain only the field {{goal}} "
            f"(write literal braces as '{{{{' and '}}}}'): {exc!r}"
        ) from None


def renamed_hint(key: str) -> str | None:
    """``"out_dir is now out"`` for a key of an earlier version, else ``None``."""
    new = RENAMED.get(key)
    return f"{key!r} is now {new!r} (e.g. {new}=...)" if new else None
