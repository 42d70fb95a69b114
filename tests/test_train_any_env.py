"""``vlmrm.train`` on any Gymnasium env, every SB3 algorithm, rl_zoo3 files, short runs,
sweeps, ``--cfg job``, the Python API and ``load_run`` (tiny CLIP, CPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import vlmrm
from vlmrm.agents import compose_train_config, latest_checkpoint
from vlmrm.agents.short_runs import planned_steps
from vlmrm.errors import ConfigError
from vlmrm.evaluate import main as evaluate_main
from vlmrm.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
QUIET = ["progress=false"]


def _runs(out: Path) -> list[Path]:
    return sorted(d for d in out.iterdir() if d.is_dir())


def _scalars(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for f in (run_dir / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


# -- composition: any env, any algorithm --------------------------------------------------


@pytest.mark.parametrize("env_id, algo", [("Acrobot-v1", "dqn"), ("Pendulum-v1", "sac"),
                                          ("MountainCarContinuous-v0", "sac")])
def test_agent_follows_the_action_space(env_id, algo):
    cfg = compose_train_config([f"env={env_id}", "goal=x", "reward=tiny"])
    assert cfg.agent.algo == algo and cfg.env.id == env_id and cfg.env.name == env_id
    assert cfg.env.episode_length is None and cfg.reward.alpha == 0.0  # no baseline: plain cosine
    with_baseline = compose_train_config([f"env={env_id}", "goal=x", "baseline=y", "reward=tiny"])
    assert with_baseline.reward.alpha == 0.5


@pytest.mark.parametrize("algo", ["td3", "ddpg", "a2c", "ppo", "sac"])
def test_every_algorithm_composes_with_sb3_defaults(algo):
    import stable_baselines3

    cfg = compose_train_config(["env=Pendulum-v1", f"agent={algo}", "goal=x", "reward=tiny", "total_steps=1e6"])
    assert cfg.agent.algo == algo
    cls = getattr(stable_baselines3, algo.upper())
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
    assert cfg.agent.learning_rate == defaults["learning_rate"]
    assert cfg.reward.relabel == ("step" if algo in ("a2c", "ppo") else "episode")


def test_preset_ids_and_module_ids(tmp_path, monkeypatch):
    assert compose_train_config(["env=vlmrm/CartPole-v0", "reward=tiny"]).env.name == "CartPole"
    (tmp_path / "my_envs.py").write_text(textwrap.dedent("""
        import gymnasium as gym
        gym.register("MyPendulum-v0", entry_point="gymnasium.envs.classic_control:PendulumEnv",
                     max_episode_steps=50)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_train_config(["env=my_envs:MyPendulum-v0", "goal=x", "reward=tiny"])
    assert cfg.env.id == "my_envs:MyPendulum-v0" and cfg.env.name == "MyPendulum-v0" and cfg.agent.algo == "sac"


@pytest.mark.parametrize("argv, words", [
    (["env=Acrobat-v1", "goal=x"], "did you mean Acrobot-v1"),
    (["env=nomodule_xyz:Env-v0", "goal=x"], "cannot import"),
    (["env=Acrobot-v1", "reward=tiny"], "goal= is required"),
    (["env=Acrobot-v1", "goal=x", "agent=td3", "reward=tiny"], "td3 needs continuous"),
    (["env=Pendulum-v1", "goal=x", "agent=ppo", "agent.action_noise=normal:0.1", "reward=tiny"], "action_noise"),
])
def test_bad_env_settings_give_one_line(argv, words, capsys, tmp_path):
    assert train_main(argv + [f"out={tmp_path}"] + QUIET) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and words in err, err


def test_an_observation_space_sb3_cannot_store_is_one_line(capsys, tmp_path):
    """Blackjack's Tuple observations: one line naming the supported spaces and the way out,
    before any run folder exists (SB3 itself raises NotImplementedError in its buffer)."""
    out = tmp_path / "out"
    assert train_main(["env=Blackjack-v1", "goal=a winning hand", "reward=tiny", f"out={out}"] + QUIET) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error: Blackjack-v1 has a Tuple observation space"), last
    assert "supported: Box, Discrete, MultiDiscrete, MultiBinary, Dict" in last and "FlattenObservation" in last
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("setting", ["device=cuda", "reward.device=cuda", "device=cuda:1"])
def test_cuda_without_cuda_is_refused_alike_for_the_agent_and_the_reward(setting, capsys, tmp_path, monkeypatch):
    """One rule for ``device=`` and ``reward.device=``: a CUDA request on a machine without CUDA
    stops with one line before the run folder exists (SB3 alone quietly trains on the CPU)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU machine, also on a GPU one
    out = tmp_path / "out"
    assert train_main(["env=CartPole", "reward=tiny", "total_steps=16", f"out={out}", setting] + QUIET) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    device = setting.split("=", 1)[1]
    assert last == f"error: device '{device}' requested but CUDA is not available; use device='cpu'", last
    assert not out.exists()
    from vlmrm.agents.builders import agent_device, load_agent

    with pytest.raises(ConfigError, match="CUDA is not available"):  # evaluate's and load_run's path
        load_agent(__file__, "dqn", device="cuda")
    assert (agent_device("auto"), agent_device(None), agent_device("cpu")) == ("auto", "auto", "cpu")


def test_env_that_cannot_render_is_refused():
    import gymnasium as gym

    from vlmrm.envs import make_env

    class Blind(gym.Env):
        metadata = {"render_modes": []}
        observation_space = gym.spaces.Box(-1, 1, (2,))
        action_space = gym.spaces.Discrete(2)

        def __init__(self, render_mode=None):
            self.render_mode = render_mode

    gym.register("BlindEnv-v0", entry_point=Blind)
    with pytest.raises(ValueError, match="cannot render 'rgb_array'"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's own warning about the render mode
        make_env("BlindEnv-v0")
    # classic-control envs take no width/height: they render at their own size
    env = make_env("Acrobot-v1", width=64, height=64)
    env.reset(seed=0)
    assert env.render().shape == (500, 500, 3)
    env.close()


# -- rl_zoo3 hyper-parameter files --------------------------------------------------------


def test_rl_zoo_hparams_file(tmp_path, capsys):
    hp = tmp_path / "td3.yml"
    hp.write_text(textwrap.dedent("""
        Pendulum-v1:
          n_timesteps: 20000
          n_envs: 2
          policy: 'MlpPolicy'
          learning_rate: lin_7.3e-4
          gamma: 0.98
          normalize: true
          noise_type: 'normal'
          noise_std: 0.1
          policy_kwargs: "dict(net_arch=[400, 300], activation_fn=nn.Tanh)"
        CartPole-v1:
          n_timesteps: !!float 1e5
    """))
    cfg = compose_train_config(["env=Pendulum-v1", "agent=td3", f"agent.config={hp}", "goal=x",
                                "reward=tiny", "agent.gamma=0.9"])
    assert "skipping rl_zoo3 keys with no equivalent here: normalize" in capsys.readouterr().err
    assert cfg.total_steps == 20000 and cfg.n_envs == 2
    assert cfg.agent.gamma == 0.9  # the command line wins over the file
    assert cfg.agent.learning_rate == "lin_7.3e-4" and cfg.agent.action_noise == "normal:0.1"
    assert cfg.agent.policy_kwargs == {"net_arch": [400, 300], "activation_fn": "Tanh"}

    from stable_baselines3.common.env_util import make_vec_env

    from vlmrm.agents.builders import agent_kwargs, build_agent

    kwargs = agent_kwargs(cfg.agent)
    assert math.isclose(kwargs["learning_rate"](0.5), 7.3e-4 / 2)
    venv = make_vec_env("Pendulum-v1", n_envs=1)
    agent = build_agent(cfg.agent, venv, seed=0, device="cpu")
    assert np.allclose(agent.action_noise._sigma, 0.1) and agent.policy.actor.mu[0].out_features == 400
    venv.close()
    with pytest.raises(ConfigError, match="no entry for Acrobot-v1"):
        compose_train_config(["env=Acrobot-v1", f"agent.config={hp}", "goal=x", "reward=tiny"])


def test_a_warm_up_longer_than_the_run_is_said(tmp_path, capsys):
    """An rl_zoo3 file's learning_starts is the user's own (never scaled), so a shorter run
    would collect frames and never train: one warning says so and how to fix it."""
    hp = tmp_path / "hparams.yml"
    hp.write_text("Pendulum-v1:\n  n_timesteps: 20000\n  learning_starts: 10000\n")
    cfg = compose_train_config(["env=Pendulum-v1", "agent=td3", f"agent.config={hp}", "goal=x", "reward=tiny",
                                "total_steps=300", "n_envs=1"])
    assert cfg.agent.learning_starts == 10000  # kept: the file set it
    warning = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert warning == ["[vlmrm.train] warning: agent.learning_starts=10000 is not below the run's 300 steps, so "
                       "the agent never trains; set agent.learning_starts=30 (or leave it out of agent.config "
                       "and the command line to have it scaled), or raise total_steps above 10000"], warning
    compose_train_config(["env=Pendulum-v1", "agent=td3", f"agent.config={hp}", "goal=x", "reward=tiny",
                          "total_steps=300", "agent.learning_starts=30"])
    assert "warning:" not in capsys.readouterr().err  # below the run: it trains
    compose_train_config(["env=Pendulum-v1", "agent=td3", "goal=x", "reward=tiny", "total_steps=300"])
    assert "warning:" not in capsys.readouterr().err  # the preset's own warm-up is scaled instead


# -- short runs ----------------------------------------------------------------------------


def test_short_runs_are_scaled_to_learn(capsys):
    cfg = compose_train_config(["env=CartPole", "reward=tiny", "total_steps=2000"])
    err = capsys.readouterr().err
    assert "short run (2000 steps)" in err and err.count("\n") == 1
    assert cfg.agent.learning_starts == 200  # 75,000 in the preset
    assert cfg.agent.train_freq * cfg.n_envs <= (2000 - 200) // 4
    assert cfg.agent.gradient_steps == cfg.agent.train_freq  # the preset's 1:1 ratio kept
    assert "total_steps" not in cfg.env and "agent_params" not in cfg.env  # each value shown once
    kept = compose_train_config(["env=CartPole", "reward=tiny", "total_steps=2000", "agent.learning_starts=1500"])
    assert kept.agent.learning_starts == 1500
    ppo = compose_train_config(["env=CartPole", "agent=ppo", "reward=tiny", "total_steps=2000"])
    assert ppo.agent.n_steps * ppo.n_envs == 2000 == planned_steps(ppo)
    long = compose_train_config(["env=CartPole", "reward=tiny"])
    assert long.agent.learning_starts == 75_000


# -- the acceptance runs -------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["env=Acrobot-v1", "goal=the acrobot's tip swung high above the bar", "baseline=an acrobot"],
    ["env=Pendulum-v1", "agent=td3", "goal=a pendulum pointing up", "baseline=a pendulum"],
])
def test_any_gym_env_trains_and_logs_train_scalars(argv, tmp_path):
    assert train_main(argv + ["reward=tiny", "total_steps=300", f"out={tmp_path}"] + QUIET) == 0
    [run] = _runs(tmp_path)
    ckpt = latest_checkpoint(run)
    assert ckpt.step == 300 and (run / "checkpoints" / "step_000000300" / "agent.zip").is_file()
    tags = _scalars(run)
    assert any(t.startswith("train/") for t in tags) and "eval/gt_return" in tags, tags
    assert "rollout/ep_rew_mean" not in tags  # SB3's ambiguous name: gt_return/clip_return instead


def test_sweep_writes_a_run_each_and_a_table(tmp_path):
    env = {**os.environ, "COLUMNS": ""}
    res = subprocess.run([sys.executable, "-m", "vlmrm.train", "-m", "env=CartPole", "reward=tiny",
                          "total_steps=300", "seed=0,1", "n_envs=4", "eval.video=false", f"out={tmp_path}",
                          "progress=false"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    runs = sorted((tmp_path / "multirun").glob("*/runs/*"))  # the sweep folder's run folders
    assert len(runs) == 2
    assert sorted(OmegaConf.load(r / "config.yaml").seed for r in runs) == [0, 1]
    rows = [ln for ln in res.stdout.splitlines() if "seed=" in ln]
    assert len(rows) == 2 and all(str(r) in res.stdout for r in runs)  # one unwrapped row per run


def test_cfg_job_prints_the_config_and_trains_nothing(tmp_path, capsys):
    assert train_main(["env=Acrobot-v1", "goal=x", "reward=tiny", "total_steps=300", f"out={tmp_path}",
                       "--cfg", "job"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.env.id == "Acrobot-v1" and printed.agent.algo == "dqn" and printed.total_steps == 300
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    assert train_main(["-m", "seed=0,1", "env=CartPole", "reward=tiny", "--cfg", "job"]) == 0
    assert capsys.readouterr().out.count("# job ") == 2
    assert train_main(["env=CartPole", "--cfg", "hydra"]) == 2


# -- the Python API, load_run and evaluate from elsewhere -----------------------------------------


def test_python_api_relative_weights_and_load_run_elsewhere(tmp_path, saved_tuned_tiny, monkeypatch):
    _, weights = saved_tuned_tiny(0.05)
    work = tmp_path / "work"
    (work / "w").mkdir(parents=True)
    (work / "w" / "tuned.safetensors").write_bytes(Path(weights).read_bytes())
    monkeypatch.chdir(work)
    cfg = vlmrm.compose_train_config(["env=CartPole", "reward.model=vlmrm-tiny",
                                      "reward.pretrained=w/tuned.safetensors", "total_steps=64", "n_envs=2",
                                      "eval.episodes=0", "out=runs", "run_name=r"])
    cfg.agent.learning_rate = 1e-3  # a plain config, edited in Python
    result = vlmrm.train_agent(cfg)
    assert result.steps == 64 and result.run_dir == work / "runs" / "r"
    saved = OmegaConf.load(result.run_dir / "config.yaml")
    assert saved.reward.pretrained == str(work / "w" / "tuned.safetensors") and saved.agent.learning_rate == 1e-3

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    run = vlmrm.load_run(work / "runs" / "r")
    with run:
        obs, _ = run.env.reset(seed=0)
        action, _ = run.agent.predict(obs, deterministic=True)
        _, reward, _, _, info = run.env.step(action)
        frame = run.base_env.render()
        assert math.isclose(reward, float(run.reward(frame[None])[0]), rel_tol=1e-5)
        assert "original_reward" in info
    # evaluate, from another directory: the run's CLIP, and another local checkpoint
    assert evaluate_main([f"run={work / 'runs' / 'r'}", "episodes=1", "video=false", "out=own"]) == 0
    _, other = saved_tuned_tiny(0.2)
    assert evaluate_main([f"run={work / 'runs' / 'r'}", "episodes=1", "video=false",
                          f"reward_pretrained={other}", "out=other"]) == 0
    own, rescored = (json.loads((elsewhere / d / "results.json").read_text()) for d in ("own", "other"))
    assert rescored["reward_model"] == "vlmrm-tiny" and rescored["reward_pretrained"] == str(other)
    assert own["per_episode"][0]["length"] == rescored["per_episode"][0]["length"]
    assert own["clip_return"] != rescored["clip_return"]


@pytest.mark.parametrize("argv", [["env=CartPole", "agent=a2c"], ["env=Pendulum-v1", "agent=ddpg", "goal=up"]])
def test_a2c_and_ddpg_train(argv, tmp_path):
    assert train_main(argv + ["reward=tiny", "total_steps=40", "n_envs=2", "eval.episodes=0",
                              f"out={tmp_path}"] + QUIET) == 0
    [run] = _runs(tmp_path)
    assert latest_checkpoint(run).step == 40 and any(t.startswith("train/") for t in _scalars(run))


def test_progress_bar_ends_where_the_run_ends(tmp_path, capsys):
    argv = ["env=CartPole", "reward=tiny", "total_steps=30", "n_envs=4", "eval.episodes=0", f"out={tmp_path}"]
    assert train_main(argv) == 0
    err = capsys.readouterr().err
    assert "the run ends at step 32" in err and "32/32" in err and "36/" not in err
    assert latest_checkpoint(_runs(tmp_path)[0]).step == 32


def test_record_fails_before_rolling_out_when_the_model_is_missing(tmp_path, monkeypatch, capsys):
    from vlmrm.record import main as record_main

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "rec"
    assert record_main(["env=CartPole", "episodes=1", "goal=pole upright", "model=ViT-B-32/openai",
                        f"out={out}"]) == 2
    assert "not in the local cache" in capsys.readouterr().err
    assert not (out / "videos").exists()  # nothing rolled out or written


def test_console_output_fits_a_log_file(tmp_path):
    """Tables stay whole when piped; SDL's XDG_RUNTIME_DIR line is not printed."""
    code = textwrap.dedent("""
        from rich.table import Table
        from vlmrm.runtime.console import make_console
        import vlmrm.envs, gymnasium as gym
        t = Table()
        t.add_column("a very long column " * 6)
        t.add_row("x" * 150)
        make_console().print(t)
        env = gym.make("Acrobot-v1", render_mode="rgb_array"); env.reset(seed=0); env.render(); env.close()
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "DISPLAY", "WAYLAND_DISPLAY",
                                                            "SDL_VIDEODRIVER", "XDG_RUNTIME_DIR")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "x" * 150 in res.stdout  # one row, not wrapped at 80 columns
    assert "XDG_RUNTIME_DIR" not in res.stderr, res.stderr


def test_a_gym_id_takes_deletion_overrides():
    # ~agent.<key> then +agent.<key>=...: Hydra's way to replace a mapping, beside a gym id
    from vlmrm.agents.config import resolve_config

    cfg = resolve_config([
        "env=Pendulum-v1", "goal=a pendulum pointing up", "agent=sac",
        "~agent.policy_kwargs", "+agent.policy_kwargs={net_arch:[64,64]}",
    ])
    assert OmegaConf.to_container(cfg.agent.policy_kwargs) == {"net_arch": [64, 64]}
