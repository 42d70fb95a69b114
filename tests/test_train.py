"""``python -m vlmrm.train`` and ``python -m vlmrm.evaluate``: configs, smoke runs, Ctrl-C
and resume, one-line errors. Everything uses the seeded ``vlmrm-tiny`` CLIP on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _runs import tb_scalars as _tb_scalars
from omegaconf import OmegaConf

import vlmrm
from vlmrm.agents import (
    compose_train_config,
    config_dir,
    env_factory,
    latest_checkpoint,
    load_replay_buffer,
)
from vlmrm.envs import ENV_DEFAULTS
from vlmrm.errors import ConfigError
from vlmrm.evaluate import main as evaluate_main
from vlmrm.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
QUIET = ["progress=false"]


def _run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENV_DEFAULTS))
def test_env_configs_agree_with_env_defaults(name):
    """configs/env/*.yaml and vlmrm.envs.ENV_DEFAULTS must not drift apart."""
    d = ENV_DEFAULTS[name]
    cfg = compose_train_config([f"env={name}", "reward=tiny"])
    assert cfg.env.id == d.env_id
    assert cfg.env.goal_template == d.goal_template
    assert d.baseline == cfg.baseline and d.goal == cfg.goal
    assert "goal" not in cfg.env and "baseline" not in cfg.env  # each value once: at the top level
    assert cfg.env.episode_length == d.episode_length
    assert tuple(cfg.env.render_size) == (64, 64)  # auto: vlmrm-tiny's input size
    assert tuple(compose_train_config([f"env={name}", "reward=ground_truth"]).env.render_size) == tuple(d.render_size)


@pytest.mark.parametrize(
    ("overrides", "size"),
    [
        (["reward=tiny"], [64, 64]),  # the tiny tower's 64² input: no resize of any frame
        (["reward=vit-b-32"], [224, 224]),
        (["reward.model=ViT-L-14-336/openai"], [336, 336]),
        (["reward=ground_truth"], [224, 224]),  # frames only for videos
        (["reward.model=hf-hub:someone/some-clip"], [224, 224]),  # size unknown without the hub
        (["reward=tiny", "env.render_size=[96,80]"], [96, 80]),  # a size given is kept
    ],
)
def test_render_size_auto_is_the_reward_models_input_size(overrides, size):
    assert list(compose_train_config(["env=CartPole", *overrides]).env.render_size) == size


def test_the_env_of_a_tiny_run_draws_at_the_towers_input_size():
    env = env_factory(compose_train_config(["env=CartPole", "reward=tiny"]).env)()
    env.reset(seed=0)
    assert env.render().shape == (64, 64, 3)
    env.close()


def test_a_bad_render_size_names_auto():
    with pytest.raises(ConfigError, match=r"env.render_size must be \[width, height\] or auto, got 'big'"):
        compose_train_config(["env=CartPole", "reward=tiny", "env.render_size=big"])


def test_humanoid_defaults_are_the_papers():
    cfg = compose_train_config(["env=Humanoid"])
    assert cfg.agent.algo == "sac"
    assert (cfg.agent.gamma, cfg.agent.learning_rate, cfg.agent.tau) == (0.95, 6e-4, 0.005)
    assert cfg.agent.learning_starts == 50_000 and cfg.agent.train_freq == 100 and cfg.agent.gradient_steps == -1
    assert cfg.env.episode_length == 100 and cfg.total_steps == 10_000_000
    assert cfg.reward.model == "ViT-bigG-14/laion2b_s39b_b160k" and cfg.reward.relabel == "episode"
    assert cfg.env.goal_template.format(goal=cfg.goal) == "a humanoid robot kneeling"
    assert cfg.baseline == "a humanoid robot"
    assert compose_train_config(["env=CartPole"]).agent.algo == "dqn"
    assert compose_train_config(["env=MountainCar"]).agent.algo == "sac"


def test_overrides_groups_and_precedence():
    cfg = compose_train_config(
        ["env=humanoid", "goal=kneeling, arms up (really)", "reward=vit-bigg-14", "reward.alpha=0.5",
         "seed=3", "total_steps=1e6", "agent.gamma=0.9"]
    )
    assert cfg.env.name == "Humanoid" and cfg.goal == "kneeling, arms up (really)"
    assert cfg.reward.alpha == 0.5 and cfg.seed == 3 and cfg.total_steps == 1_000_000
    assert cfg.agent.gamma == 0.9  # the user wins over the env's paper value ...
    assert cfg.agent.tau == 0.005  # ... which wins over agent/sac.yaml
    ppo = compose_train_config(["env=Humanoid", "agent=ppo"])
    assert ppo.agent.algo == "ppo" and "tau" not in ppo.agent and ppo.reward.relabel == "step"
    gt = compose_train_config(["env=CartPole", "reward=ground_truth"])
    assert gt.reward.model is None and gt.reward.relabel == "none"
    assert gt.agent == compose_train_config(["env=CartPole"]).agent  # same hyper-parameters
    assert compose_train_config(["env.goal_template=a robot, {goal}!"]).env.goal_template == "a robot, {goal}!"
    assert compose_train_config(["reward=tiny"]).reward.compile is None
    assert compose_train_config(["reward=tiny", "reward.compile=reduce-overhead"]).reward.compile == "reduce-overhead"


def test_policy_kwargs_take_any_key_and_merge_with_the_envs():
    assert compose_train_config(["env=CartPole"]).agent.policy_kwargs == {"net_arch": [256, 256]}
    for arg in ("agent.policy_kwargs.net_arch=[32]", "+agent.policy_kwargs.net_arch=[32]",
                "agent.policy_kwargs={net_arch:[32]}"):
        assert compose_train_config(["env=CartPole", arg]).agent.policy_kwargs == {"net_arch": [32]}, arg
    # one key: the env's other keys stay; the whole mapping: it is replaced
    one = compose_train_config(["env=CartPole", "agent.policy_kwargs.activation_fn=tanh"]).agent.policy_kwargs
    assert one == {"net_arch": [256, 256], "activation_fn": "tanh"}
    whole = compose_train_config(["env=CartPole", "agent.policy_kwargs={activation_fn:tanh}"]).agent.policy_kwargs
    assert whole == {"activation_fn": "tanh"}
    assert compose_train_config(["env=Humanoid", "agent.policy_kwargs.net_arch=[8]"]).agent.policy_kwargs == {"net_arch": [8]}


def test_config_files_are_shipped():
    """The installed config tree holds every choice the README names, and each file of each
    group composes into a training config that carries that file's values."""
    from vlmrm.agents.config import group_options

    root = config_dir()
    assert (root / "train.yaml").is_file() and root == Path(vlmrm.configs.__file__).parent
    options = {group: group_options(group) for group in ("env", "agent", "reward")}
    assert {"CartPole", "Humanoid", "MountainCar"} <= set(options["env"])
    assert {"sac", "ppo", "dqn"} <= set(options["agent"])
    assert {"tiny", "vit-bigg-14", "ground_truth"} <= set(options["reward"])
    import gymnasium

    for env in options["env"]:
        cfg = compose_train_config([f"env={env}", "reward=tiny"])
        assert cfg.env.name == env and cfg.env.id in gymnasium.registry, (env, cfg.env.id)
    for agent in options["agent"]:
        env = "CartPole" if agent == "dqn" else "MountainCar"
        assert compose_train_config([f"env={env}", f"agent={agent}", "reward=tiny"]).agent.algo == agent
    for reward in options["reward"]:
        cfg = compose_train_config(["env=CartPole", f"reward={reward}"])
        assert cfg.reward.name == reward, reward
    paper = compose_train_config(["env=Humanoid", "reward=vit-bigg-14"]).reward
    assert paper.model == "ViT-bigG-14/laion2b_s39b_b160k" and 0.0 <= paper.alpha <= 1.0


BAD = [
    (["env=Atari"], "unknown env"),
    (["agent=trpo"], "unknown agent"),
    (["reward=clip-xxl"], "unknown reward"),
    (["total_steps=-5"], "total_steps"),
    (["reward=tiny", "reward.alpha=1.5"], "alpha"),
    (["reward=tiny", "reward.alpha=-0.1"], "alpha"),
    (["goal="], "goal"),
    (["env.goal_template=a humanoid robot"], "{goal}"),
    (["totl_steps=5"], "unknown setting"),
    (["n_envs=0"], "n_envs"),
    (["env=CartPole", "agent=sac", "reward=tiny"], "continuous"),
    (["agent.lerning_rate=1"], "did you mean agent.learning_rate"),
    (["agent.polcy_kwargs.net_arch=[8]"], "did you mean agent.policy_kwargs"),
    (["reward=tiny", "reward.compile=fast"], "reward.compile must be true, false or a torch.compile mode"),
    (["env=CartPole", "reward=tiny", "agent.policy_kwargs.nett_arch=[8]"], "nett_arch"),
    (["env=CartPole", "reward=tiny", "agent.policy_kwargs.activation_fn=swish"], "activation_fn"),
    (["seed=abc"], "seed"),
    (["oops"], "key=value"),
    (["env=Humanoid", "agent=ppo", "reward=tiny", "reward.relabel=episode"], "off-policy"),
    (["reward=tiny", "reward.relabel_worker=fork"], "reward.relabel_worker"),
    (["reward=tiny", "reward.distributed=true", "reward.relabel_worker=process"], "collectives"),
    (["resume=/nonexistent/run"], "config.yaml"),
]


@pytest.mark.parametrize("argv, words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_config_gives_one_clear_line(argv, words, capsys, tmp_path):
    assert train_main(argv + [f"out={tmp_path}"] + QUIET) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert words in err, err
    assert not any(tmp_path.iterdir())  # no half-made run directory


_TORCH_FREE = """
import sys
from vlmrm.{module} import main
assert main(["--help"]) == 0
for bad in {bad!r}:
    assert main(bad) == 2, bad
assert "torch" not in sys.modules, "torch was imported"
"""


@pytest.mark.parametrize(
    "module, bad",
    [
        ("train", [["nonsense=1"], ["reward.alpha=2"], ["total_steps=-1"], ["out_dir=runs"], ["env=Atari"],
                   ["reward=tiny", "reward.model=ViT-B-32@w.pt"], ["reward.device=gpu"], ["env.goal_template=x"]]),
        ("evaluate", [["nonsense=1"], [], ["run=r", "episodes=0"], ["run=r", "reward_model=ViT-B-32@w.pt"],
                      ["run=r", "reward_model=none", "reward_pretrained=w.pt"], ["run=r", "device=gpu"]]),
    ],
)
def test_help_and_bad_settings_answer_before_torch(module, bad):
    """--help and every settings error answer in a fresh interpreter without importing torch."""
    res = subprocess.run([sys.executable, "-c", _TORCH_FREE.format(module=module, bad=bad)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "settings (key=value" in res.stdout
    errors = res.stderr.strip().splitlines()
    assert len(errors) == len(bad) and all(e.startswith("error: ") for e in errors), res.stderr


def test_help_lists_every_key_and_the_groups(capsys):
    assert train_main(["--help"]) == 0
    out = capsys.readouterr().out
    for key in ("reward.alpha=", "reward.model=", "reward.pretrained=", "reward.device=auto", "reward.compile=",
                "reward.relabel=", "eval.every=", "out=runs", "progress=true", "resume=", "total_steps="):
        assert key in out, key
    assert "env=CartPole|Humanoid|MountainCar" in out and "agent=a2c|ddpg|dqn|ppo|sac|td3" in out


def test_renamed_keys_name_their_new_name(capsys):
    for old, new in (("out_dir", "out"), ("progress_bar", "progress")):
        assert train_main([f"{old}=x"]) == 2
        err = capsys.readouterr().err
        assert f"'{old}' is now '{new}'" in err, err
    assert train_main(["totl_steps=5"]) == 2
    assert "did you mean 'total_steps'" in capsys.readouterr().err


def test_settings_defaults_agree_with_train_yaml():
    """The settings dataclasses document the defaults that the config files give."""
    import dataclasses

    from vlmrm.agents.settings import TrainSettings

    train = OmegaConf.load(config_dir() / "train.yaml")
    preset = OmegaConf.load(config_dir() / "reward" / "vit-bigg-14.yaml")  # train.yaml's default
    d = TrainSettings()
    for owner, raw, prefix in ((d, train, ""), (d.eval, train.eval, "eval."), (d.reward, preset, "reward."),
                               (d.wandb, train.wandb, "wandb.")):
        for f in dataclasses.fields(owner):
            value = getattr(owner, f.name)
            if f.name in ("env", "agent", "reward", "eval", "wandb"):
                continue
            written = OmegaConf.to_container(raw)[f.name]
            if isinstance(written, str) and written.startswith("${"):
                assert value is None, f"{prefix}{f.name}"  # the env's default
            else:
                assert written == value, f"{prefix}{f.name}"


def test_config_file_then_command_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("env: CartPole\nreward: tiny\ngoal: pole upright, please\nreward.alpha: 0.25\n"
                    "agent:\n  policy_kwargs:\n    net_arch: [8, 8]\nseed: 2\n")
    from vlmrm.agents.config import resolve_config

    cfg = resolve_config([f"config={path}", "seed=4"])
    assert (cfg.env.name, cfg.reward.name, cfg.reward.alpha, cfg.goal) == ("CartPole", "tiny", 0.25, "pole upright, please")
    assert cfg.agent.policy_kwargs == {"net_arch": [8, 8]} and cfg.seed == 4
    (tmp_path / "bad.yaml").write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config([f"config={tmp_path / 'bad.yaml'}"])


def test_compose_raises_config_error():
    with pytest.raises(ConfigError, match="choose one of"):
        compose_train_config(["env=Nope"])


# -- smoke runs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cartpole")
    argv = ["env=CartPole", "goal=pole vertically upright on top of the cart", "reward=tiny", "total_steps=480",
            "agent.learning_starts=100", "agent.train_freq=20", "agent.gradient_steps=5", "checkpoint_every=160",
            "eval.every=240", f"out={out}"] + QUIET
    assert train_main(argv) == 0
    return _run_dir(out)


def test_cartpole_smoke_run_leaves_everything(cartpole_run):
    run = cartpole_run
    assert run.name.startswith("CartPole-pole-vertically-upright")
    cfg = OmegaConf.load(run / "config.yaml")
    assert cfg.reward.model == "vlmrm-tiny" and cfg.total_steps == 480 and "resume" not in cfg
    ckpt = latest_checkpoint(run)
    assert ckpt.step == 480 and ckpt.manifest["reason"] == "final"  # exact, not rounded up to a rollout
    assert (run / "checkpoints" / "step_000000320" / "agent.zip").is_file()  # periodic (every 160)
    assert load_replay_buffer(ckpt.replay_buffer_path).pos * 8 == 480
    videos = sorted(p.name for p in (run / "videos").glob("*.mp4"))
    assert videos == ["step_000000240.mp4", "step_000000480.mp4"]
    assert (run / "videos" / videos[-1]).stat().st_size > 1000
    scalars = _tb_scalars(run)
    for tag in ("rollout/clip_return", "rollout/gt_return", "rollout/success_rate", "time/fps",
                "reward/frames_per_second", "eval/gt_return", "eval/clip_return", "train/loss"):
        assert tag in scalars, (tag, sorted(scalars))


def test_evaluate_cli(cartpole_run, capsys):
    assert evaluate_main([f"run={cartpole_run}", "episodes=2"]) == 0
    out = capsys.readouterr().out
    assert "ground-truth return" in out and "success rate" in out
    results = json.loads((cartpole_run / "eval" / "step_000000480" / "results.json").read_text())
    assert results["episodes"] == 2 and results["clip_return"] is not None
    assert results["success_rate"] is not None and (cartpole_run / "eval" / "step_000000480" / "episodes.mp4").is_file()
    assert evaluate_main([f"run={cartpole_run}", "episods=2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_evaluate_with_another_clip_and_local_weights(cartpole_run, saved_tuned_tiny, tmp_path):
    _, weights = saved_tuned_tiny(0.05)
    out = tmp_path / "eval"
    argv = [f"run={cartpole_run}", "episodes=1", "video=false", "reward_model=vlmrm-tiny",
            f"reward_pretrained={weights}", f"out={out}"]
    assert evaluate_main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["reward_model"] == "vlmrm-tiny" and results["clip_return"] is not None
    assert not (out / "episodes.mp4").exists()
    assert evaluate_main(argv[:3] + [f"out={tmp_path / 'own'}"]) == 0  # the run's own (seeded) CLIP
    own = json.loads((tmp_path / "own" / "results.json").read_text())
    assert own["per_episode"][0]["length"] == results["per_episode"][0]["length"]  # same episode ...
    assert own["clip_return"] != results["clip_return"]  # ... scored by other weights


def test_resume_reads_runs_saved_with_the_earlier_keys(cartpole_run, tmp_path):
    """Runs saved before out_dir/progress_bar were renamed (and reward.device was null) resume."""
    import shutil

    from vlmrm.agents.config import load_resume_config

    old = tmp_path / "old"
    shutil.copytree(cartpole_run, old)
    cfg = OmegaConf.load(old / "config.yaml")
    cfg.out_dir = cfg.pop("out")
    cfg.progress_bar = cfg.pop("progress")
    cfg.reward.device = None
    OmegaConf.save(cfg, old / "config.yaml")
    resumed = load_resume_config(old, ["total_steps=960"])
    assert resumed.out == cartpole_run.parent.as_posix() and resumed.progress is False
    assert resumed.reward.device == "auto" and resumed.total_steps == 960 and "out_dir" not in resumed


def test_resume_refuses_changes_that_shape_the_agent(cartpole_run, capsys):
    for bad in (["env=Humanoid"], ["n_envs=3"], ["agent.algo=sac"], ["reward.model=ViT-B-32"], ["totl_steps=9"]):
        assert train_main([f"resume={cartpole_run}", *bad] + QUIET) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err


def test_humanoid_smoke_run(tmp_path):
    argv = ["env=Humanoid", "reward=tiny", "total_steps=12", "n_envs=2", "subprocess=false",
            "env.episode_length=5", f"out={tmp_path}"] + QUIET
    assert train_main(argv) == 0
    run = _run_dir(tmp_path)
    assert run.name.startswith("Humanoid-kneeling-")
    assert latest_checkpoint(run).step == 12
    assert (run / "videos" / "step_000000012.mp4").is_file()
    assert "rollout/clip_return" in _tb_scalars(run)


def test_ppo_online_rewards_and_ground_truth(tmp_path, monkeypatch, capsys):
    compiled = []  # reward.compile reaches load_clip (compiling itself is tested in test_models)
    monkeypatch.setattr(vlmrm.ClipModel, "enable_compile", lambda self, mode: compiled.append(mode))
    ppo = ["env=CartPole", "agent=ppo", "reward=tiny", "total_steps=64", "n_envs=2", "agent.n_steps=16",
           "agent.batch_size=16", "agent.n_epochs=1", "eval.episodes=0", "reward.compile=true",
           f"out={tmp_path / 'ppo'}"]
    assert train_main(ppo + QUIET) == 0
    said = [ln for ln in capsys.readouterr().err.splitlines() if "torch threads:" in ln]
    assert len(said) == 1 and "steps to go; torch threads: " in said[0] and "(auto: " in said[0], said  # once
    run = _run_dir(tmp_path / "ppo")
    assert compiled == ["default"] and OmegaConf.load(run / "config.yaml").reward.compile == "default"
    assert latest_checkpoint(run).step == 64
    assert "rollout/clip_return" in _tb_scalars(run)
    gt = ["env=CartPole", "reward=ground_truth", "total_steps=64", "n_envs=2", "eval.episodes=0",
          f"out={tmp_path / 'gt'}"]
    assert train_main(gt + QUIET) == 0
    run = _run_dir(tmp_path / "gt")
    assert "ground-truth" in run.name and "rollout/clip_return" not in _tb_scalars(run)


# -- Ctrl-C and resume ---------------------------------------------------------------------


def _train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vlmrm.train", *args, "progress=false"]


def test_sigint_saves_checkpoint_and_resume_continues(tmp_path):
    """Ctrl-C in a terminal signals the whole process group (subprocess workers too)."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["env=CartPole", "reward=tiny", "n_envs=2", "subprocess=true", "total_steps=100000",
            "env.render_size=[64,64]", "checkpoint_every=100", "agent.learning_starts=50", "agent.train_freq=10",
            "agent.gradient_steps=2", "eval.every=0", "eval.episodes=0", f"out={tmp_path}", "run_name=run"]
    proc = subprocess.Popen(_train_cmd(*args), cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latest = run / "checkpoints" / "latest.json"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert latest.exists(), proc.communicate(timeout=30)[0] if proc.poll() is not None else "no checkpoint in time"
    periodic = json.loads(latest.read_text())["step"]
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "SIGINT: stopped at step" in out, out
    stopped = latest_checkpoint(run)
    assert stopped.manifest["reason"] == "interrupted (SIGINT)" and stopped.step >= periodic
    buffer_then = load_replay_buffer(stopped.replay_buffer_path)
    assert buffer_then.pos * 2 == stopped.step  # every step up to the stop is in the buffer

    total = stopped.step + 60
    # (in-process sub-envs this time: n_envs must stay, how they are stepped may change)
    res = subprocess.run(_train_cmd(f"resume={run}", f"total_steps={total}", "subprocess=false"), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"resuming from checkpoints/step_{stopped.step:09d} at step {stopped.step}" in res.stderr
    final = latest_checkpoint(run)
    assert final.step == total and final.manifest["reason"] == "final"
    buffer_now = load_replay_buffer(final.replay_buffer_path)
    assert buffer_now.pos * 2 == total
    n = buffer_then.pos
    for key in ("observations", "actions", "rewards", "dones"):
        assert (getattr(buffer_now, key)[:n] == getattr(buffer_then, key)[:n]).all(), key
    assert OmegaConf.load(run / "config.yaml").total_steps == total
    steps = [s for s, _ in _tb_scalars(run)["time/fps"]]
    assert max(steps) == total  # the resumed run logs in the same place, up to its last step
