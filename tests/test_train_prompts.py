"""Prompt lists in ``vlmrm.train``, ``vlmrm.evaluate`` and ``vlmrm.record``: parsing, errors,
and the averaged-prompt reward of training and evaluation against a NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from _train_rewards import TINY_CARTPOLE, buffer_rewards, numpy_reward, record_reward_models
from omegaconf import OmegaConf

import vlmrm
from vlmrm.agents import compose_train_config, goal_prompt
from vlmrm.errors import ConfigError
from vlmrm.evaluate import main as evaluate_main
from vlmrm.record import main as record_main
from vlmrm.train import main as train_main

GOALS = ["pole upright", "a pole, standing up"]
BASELINES = ["a cart", "a pole"]


def test_goal_and_baseline_lists_parse_from_the_command_line():
    cfg = compose_train_config(
        ["env=Humanoid", "reward=tiny", """goal=[kneeling,"on its knees", 'arms up, head down']""",
         "baseline=[a humanoid robot, a robot]"]
    )
    assert list(cfg.goal) == ["kneeling", "on its knees", "arms up, head down"]
    assert list(cfg.baseline) == ["a humanoid robot", "a robot"]
    # the env's template is applied to each goal
    assert goal_prompt(cfg.env.goal_template, cfg.goal) == [
        "a humanoid robot kneeling", "a humanoid robot on its knees", "a humanoid robot arms up, head down"]
    # one prompt stays a string, brackets inside text stay text
    assert compose_train_config(["env=CartPole", "reward=tiny", "goal=pole [upright]"]).goal == "pole [upright]"
    assert compose_train_config(["env=CartPole", "reward=tiny", "goal=[one]"]).goal == ["one"]


@pytest.mark.parametrize(
    "arg, words",
    [("goal=[]", "goal is an empty list"), ("baseline=[]", "baseline is an empty list"),
     ("goal=[1,2]", "goal prompts must be non-empty strings, got 1"),
     ("goal=[a,'']", "goal prompts must be non-empty strings, got ''"),
     ("baseline=[a,[b]]", "baseline prompts must be non-empty strings")],
)
def test_bad_prompt_lists_give_one_clear_line(arg, words, capsys, tmp_path):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        compose_train_config(["env=CartPole", "reward=tiny", arg])
    assert train_main(["env=CartPole", "reward=tiny", arg, f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err, err


def test_training_and_evaluate_score_the_averaged_prompts(tmp_path, monkeypatch):
    """The relabelled rewards in the replay buffer, and ``load_run``'s reward, equal NumPy's
    goal-baseline reward of the mean prompt embeddings on the same frames."""
    built = record_reward_models(monkeypatch)
    argv = [*TINY_CARTPOLE, "total_steps=120", "goal=[pole upright,'a pole, standing up']",
            "baseline=[a cart,a pole]", "env.goal_template=a photo of {goal}", "reward.alpha=0.5",
            f"out={tmp_path}", "run_name=prompts"]
    assert train_main(argv) == 0
    run_dir = tmp_path / "prompts"
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert list(saved.goal) == GOALS and list(saved.baseline) == BASELINES  # saved as lists

    (recorder,) = built
    frames = np.concatenate(recorder.calls)
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    goals = [f"a photo of {g}" for g in GOALS]
    expected = numpy_reward(clip, frames, goals, BASELINES, 0.5)
    np.testing.assert_allclose(buffer_rewards(run_dir), expected, rtol=0, atol=2e-5)
    # a single prompt gives other rewards: the lists really are averaged, not cut to one
    assert np.abs(numpy_reward(clip, frames, goals[:1], BASELINES[:1], 0.5) - expected).max() > 1e-3

    with vlmrm.load_run(run_dir) as run:  # what python -m vlmrm.evaluate scores with
        assert run.goal == goals
        np.testing.assert_allclose(run.reward(frames[:16]), expected[:16], rtol=0, atol=2e-5)
    with vlmrm.load_run(run_dir, goal=["pole up", "upright"], baseline="a cart") as run:
        np.testing.assert_allclose(
            run.reward(frames[:16]),
            numpy_reward(clip, frames[:16], ["a photo of pole up", "a photo of upright"], ["a cart"], 0.5),
            rtol=0, atol=2e-5)

    # the run folder is named after the first goal; resume keeps the prompts
    assert train_main(["resume=" + str(run_dir), "total_steps=140", "progress=false"]) == 0
    assert list(OmegaConf.load(run_dir / "config.yaml").goal) == GOALS


def test_evaluate_takes_prompt_lists(tmp_path, capsys):
    """evaluate goal=[...]: the CLIP return is NumPy's reward of the mean of the listed
    prompts (with the run's baseline and α) summed over the episode's frames."""
    import json

    from vlmrm.agents.rollout import run_episodes

    out = tmp_path / "runs"
    assert train_main([*TINY_CARTPOLE, "total_steps=60", "goal=[a, b c]", f"out={out}"]) == 0
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    assert run_dir.name.startswith("CartPole-a-")
    goals = ["pole up", "pole, upright"]
    assert evaluate_main([f"run={run_dir}", "episodes=1", "video=false", "goal=[pole up, 'pole, upright']",
                          f"out={tmp_path / 'ev'}"]) == 0
    assert "CLIP return" in capsys.readouterr().out
    result = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert result["goal"] == goals  # CartPole's goal template is "{goal}"
    # the same deterministic episode (seed 0, evaluate's default), its frames kept, scored here
    with vlmrm.load_run(run_dir) as run:
        episode = run_episodes(run.agent, run.base_env, 1, deterministic=True, keep_frames=True, seed=0)
    frames = np.stack(episode.episodes[0].frames[1:])  # the post-step frames (not the reset one)
    saved = OmegaConf.load(run_dir / "config.yaml")
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    expected = numpy_reward(clip, frames, goals, [saved.baseline], float(saved.reward.alpha)).sum()
    assert result["clip_return"] == pytest.approx(expected, abs=1e-3)
    first_only = numpy_reward(clip, frames, goals[:1], [saved.baseline], float(saved.reward.alpha)).sum()
    assert abs(first_only - expected) > 1e-2  # averaging the list is visible in the return
    for bad, words in (("goal=[]", "goal is an empty list"), ("baseline=[1]", "baseline prompts must be")):
        assert evaluate_main([f"run={run_dir}", bad]) == 2
        assert words in capsys.readouterr().err


def test_record_prompt_lists(tmp_path, capsys):
    """record: a list sweeps goals and [[p1,p2]] averages them (as in score); empty lists are refused."""
    common = ["env=CartPole", "episodes=1", "max_steps=6", "model=vlmrm-tiny", "progress=false", "plot=false",
              "width=48", "height=48"]
    for bad, words in (("goal=[]", "goal is an empty list"), ("goal=[[]]", "needs non-empty text prompts"),
                       ("baseline=[[a,2]]", "needs non-empty text prompts")):
        assert record_main([*common, bad, f"out={tmp_path / 'bad'}"]) == 2
        assert words in capsys.readouterr().err
    out = tmp_path / "rec"
    assert record_main([*common, "goal=[[pole upright,'a pole, standing']]", "baseline=[[a pole]]",
                        "alpha=0.5", f"out={out}"]) == 0
    import csv

    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert rows and all(r["goal"] == "pole upright | a pole, standing" for r in rows), rows[0]


def test_goal_prompt_refuses_bad_lists():
    with pytest.raises(ConfigError, match="empty list"):
        goal_prompt("{goal}", [])
    with pytest.raises(ConfigError, match="non-empty strings"):
        goal_prompt("{goal}", ["a", 3])
