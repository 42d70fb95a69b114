"""Rollout datasets for domain-tuned rewards: predicates, the builder, its files and CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from vlmrm.errors import ConfigError
from vlmrm.tune.data import load_ranked_sets
from vlmrm.tune.rollouts import main
from vlmrm.tune.rollouts.dataset import build_rollout_dataset
from vlmrm.tune.rollouts.frames import goal_ranked_sets
from vlmrm.tune.rollouts.predicates import (
    DEFAULT_PREDICATES,
    default_predicates,
    load_predicates,
    parse_predicates,
)
from vlmrm.tune.rollouts.settings import RolloutConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
UPRIGHT = "pole vertically upright on top of the cart"


# --------------------------------------------------------------------------- predicates


def test_cartpole_defaults_label_angle_bands():
    p = default_predicates("vlmrm/CartPole-v0")
    states = np.array(
        [
            [0, 0, 0.0, 0],
            [1.0, 0, -0.02, 0],
            [0, 0, 0.05, 0],
            [0, 0, -0.05, 0],
            [0, 0, 0.2, 0],
            [0, 0, -0.2, 0],
        ]
    )
    assert p.label(states) == [
        UPRIGHT,
        UPRIGHT,
        "pole leaning slightly to the right",
        "pole leaning slightly to the left",
        "pole tilted far to the right",
        "pole tilted far to the left",
    ]
    d = p.goal_distance(states)
    np.testing.assert_allclose(d, np.abs(states[:, 2]) / 0.2)
    assert p.goal is not None and p.goal.baseline == "pole and cart"


def test_interval_target_is_zero_inside_and_first_rule_wins():
    p = default_predicates("MountainCar")
    d = p.goal_distance(np.array([[0.5, 0.0], [0.45, 0.0], [-0.375, 0.0]]))
    np.testing.assert_allclose(d, [0.0, 0.0, 0.825 / 1.65])
    doc = {
        "state": ["a"],
        "captions": [{"caption": "low", "when": {"a": [None, 1]}}, {"caption": "any", "when": {}}],
    }
    q = parse_predicates(doc)
    assert q.label([[0.5], [3.0]]) == ["low", "any"]
    assert q.captions == ["low", "any"]
    assert np.isnan(q.goal_distance([[0.0]])).all()


def test_unmatched_states_get_no_caption():
    q = parse_predicates(
        {"state": ["a", "b"], "captions": [{"caption": "c", "when": {"abs(b)": [None, 1], "a": 2}}]}
    )
    assert q.label([[2, -0.5], [2, 1.5], [3, 0]]) == ["c", None, None]


@pytest.mark.parametrize(
    "doc, needle",
    [
        (
            {"state": ["a"], "captions": [{"caption": "x", "when": {"z": [0, 1]}}]},
            "unknown state variable 'z'",
        ),
        ({"state": ["a"], "captions": [{"caption": "x", "when": {"a": [2, 1]}}]}, "above high"),
        ({"state": ["a"], "captions": [{"caption": "x", "when": {"a": [0, 1, 2]}}]}, "[low, high]"),
        ({"state": ["a"], "captions": []}, "non-empty list"),
        ({"state": ["a"], "captions": [{"caption": "x"}], "colour": 1}, "unknown key"),
        ({"state": "a", "captions": [{"caption": "x"}]}, "'state' must list"),
        (
            {
                "state": ["a"],
                "captions": [{"caption": "x"}],
                "goal": {"caption": "x", "baseline": "x", "target": {"a": 0}},
            },
            "must differ",
        ),
        (
            {
                "state": ["a"],
                "captions": [{"caption": "x"}],
                "goal": {"caption": "x", "baseline": "y"},
            },
            "missing 'target'",
        ),
    ],
)
def test_bad_predicate_files_fail_with_one_clear_line(doc, needle):
    with pytest.raises(ConfigError) as err:
        parse_predicates(doc, "p.yaml")
    msg = str(err.value)
    assert needle in msg and msg.startswith("p.yaml") and "\n" not in msg


def test_example_files_match_shipped_defaults():
    for name, file in (
        ("CartPole", "cartpole_predicates.yaml"),
        ("MountainCar", "mountaincar_predicates.yaml"),
    ):
        from_file = load_predicates(EXAMPLES / file)
        shipped = load_predicates(name)
        assert from_file.variables == shipped.variables
        assert from_file.rules == shipped.rules
        assert from_file.goal == shipped.goal
    assert set(DEFAULT_PREDICATES) == {"CartPole", "MountainCar"}
    with pytest.raises(ConfigError, match="does not exist"):
        load_predicates("no/such/file.yaml")
    with pytest.raises(ConfigError, match="no default predicates"):
        default_predicates("Humanoid")


def test_goal_ranked_sets_are_strict_and_nearest_first():
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 1, size=200)
    images = [f"/img/{i}.png" for i in range(200)]
    sets = goal_ranked_sets(images, d, "goal", size=4, count=30, resolution=0.1, rng=rng)
    assert len(sets) == 30
    index = {p: i for i, p in enumerate(images)}
    for s in sets:
        dist = [d[index[c]] for c in s.candidates]
        bins = np.floor(np.array(dist) / 0.1)
        assert s.anchor == "goal" and s.anchor_kind == "text" and len(s) == 4
        assert list(bins) == sorted(bins) and len(set(bins)) == 4
    assert (
        goal_ranked_sets(images[:1], d[:1], "goal", size=4, count=3, resolution=0.1, rng=rng) == []
    )


# --------------------------------------------------------------------------- builder


@pytest.fixture(scope="module")
def cartpole_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rollouts") / "cartpole"
    cfg = RolloutConfig(
        env="CartPole", out=str(out), episodes=10, max_steps=40, stride=2, size=32, seed=3
    )
    result = build_rollout_dataset(cfg)
    assert result.frames["train"] > 0 and result.frames["eval"] > 0
    return out


def _states(out: Path) -> list[dict[str, str]]:
    with (out / "states.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_dataset_files_load_in_the_tuning_format(cartpole_dataset):
    out = cartpole_dataset
    manifest = json.loads((out / "manifest.json").read_text())
    for split in ("train", "eval"):
        for name in ("captions", "goal_pairs", "goal_ranked", "preferences"):
            sets = load_ranked_sets(out / split / f"{name}.jsonl")
            assert len(sets) == manifest["sets"][split].get(name, len(sets))
        probe = [
            json.loads(line) for line in (out / split / "probe.jsonl").read_text().splitlines()
        ]
        assert all((out / split / row["image"]).is_file() for row in probe)
    prefs = load_ranked_sets(out / "train" / "preferences.jsonl")
    assert (
        len(prefs)
        == manifest["sets"]["train"]["goal_pairs"] + manifest["sets"]["train"]["goal_ranked"]
    )


def test_captions_agree_with_states_and_splits_hold_out_episodes(cartpole_dataset):
    out = cartpole_dataset
    rows = _states(out)
    pred = default_predicates("CartPole")
    by_image = {str((out / r["image"]).resolve()): r for r in rows}
    vectors = np.array([[float(r[v]) for v in pred.variables] for r in rows])
    assert [r["caption"] or None for r in rows] == pred.label(vectors)
    train_eps = {r["episode"] for r in rows if r["split"] == "train"}
    eval_eps = {r["episode"] for r in rows if r["split"] == "eval"}
    assert train_eps and eval_eps and not train_eps & eval_eps
    for split in ("train", "eval"):
        for s in load_ranked_sets(out / split / "captions.jsonl"):
            row = by_image[s.anchor]
            assert row["split"] == split
            assert s.candidates[0] == row["caption"] and s.ranks[0] == 0 and set(s.ranks[1:]) == {1}
            assert sorted(s.candidates) == sorted(pred.captions)
        for s in load_ranked_sets(out / split / "goal_pairs.jsonl"):
            d = float(by_image[s.anchor]["goal_distance"])
            assert s.candidates[0] == (UPRIGHT if d <= 0.15 else "pole and cart")
            assert d <= 0.15 or d >= 0.5
        for s in load_ranked_sets(out / split / "goal_ranked.jsonl"):
            dist = [float(by_image[c]["goal_distance"]) for c in s.candidates]
            assert s.anchor == UPRIGHT and dist == sorted(dist)
            assert {by_image[c]["split"] for c in s.candidates} == {split}
    first = next(r for r in rows if r["step"] == "0")
    from imageio.v3 import imread

    assert imread(out / first["image"]).shape == (32, 32, 3)


def test_rollouts_are_reproducible_and_caps_balance(tmp_path):
    def build(out: str, **kw):
        cfg = RolloutConfig(
            env="CartPole", out=str(tmp_path / out), episodes=6, max_steps=30, size=16, seed=1, **kw
        )
        build_rollout_dataset(cfg)
        return _states(tmp_path / out)

    a, b = build("a"), build("b")
    assert [(r["theta"], r["caption"]) for r in a] == [(r["theta"], r["caption"]) for r in b]
    capped = build("c", max_per_caption=3)
    for split in ("train", "eval"):
        counts: dict[str, int] = {}
        for r in capped:
            if r["split"] == split:
                counts[r["caption"]] = counts.get(r["caption"], 0) + 1
        assert max(counts.values()) <= 3


def test_mountaincar_scripted_policy_reaches_the_flag(tmp_path):
    cfg = RolloutConfig(
        env="MountainCar",
        out=str(tmp_path / "mc"),
        episodes=2,
        policies="scripted",
        noise="0",
        max_steps=400,
        stride=10,
        size=16,
        eval_fraction=0.0,
    )
    result = build_rollout_dataset(cfg)
    rows = _states(tmp_path / "mc")
    assert max(float(r["position"]) for r in rows) >= 0.45
    assert (
        "a car at the peak of the mountain, next to the yellow flag"
        in result.caption_counts["train"]
    )


def test_generated_data_trains_with_the_tuner(cartpole_dataset, tmp_path):
    from vlmrm.tune import train

    out = cartpole_dataset
    common = {
        "model": "vlmrm-tiny",
        "device": "cpu",
        "tensorboard": False,
        "progress": False,
        "lr": 1e-4,
    }
    r1 = train(
        loss="contrastive",
        data=str(out / "train/captions.jsonl"),
        eval_data=str(out / "eval/captions.jsonl"),
        steps=2,
        batch_size=8,
        out=str(tmp_path / "c"),
        **common,
    )
    r2 = train(
        loss="dpo",
        data=str(out / "train/preferences.jsonl"),
        eval_data=str(out / "eval/preferences.jsonl"),
        pretrained=str(r1.checkpoint),
        steps=2,
        batch_size=8,
        pairs="all",
        out=str(tmp_path / "d"),
        **common,
    )
    # the captions teach the tiny CLIP to pick each held-out frame's caption: top-1 on the eval
    # split's caption sets rises far above where the untuned model started
    assert r1.after["pref/top1"] > r1.before["pref/top1"] + 0.3, (r1.before, r1.after)
    # the preference pairs, tuned on top of that checkpoint, separate the eval pairs more: the
    # DPO loss falls below log 2 (its value at the start, where the model is its own reference)
    assert r2.before["loss"] == pytest.approx(np.log(2), abs=1e-6)
    assert r2.after["loss"] < r2.before["loss"] - 0.02, (r2.before, r2.after)
    assert r2.after["probe/gap"] > r2.before["probe/gap"] + 0.05, (r2.before, r2.after)



# --------------------------------------------------------------------------- CLI


def test_cli_builds_and_rejects_unknown_keys(tmp_path, capsys):
    out = tmp_path / "cli"
    labels = EXAMPLES / "cartpole_predicates.yaml"
    assert (
        main(
            [
                "env=CartPole",
                "episodes=2",
                "max_steps=10",
                "size=16",
                f"labels={labels}",
                f"out={out}",
            ]
        )
        == 0
    )
    assert (out / "manifest.json").is_file() and "wrote" in capsys.readouterr().out
    assert main(["env=CartPole", f"out={out}", "episodes=2"]) == 2
    assert "overwrite=true" in capsys.readouterr().err
    assert main(["env=CartPole", "episodez=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "episodez" in err and "episodes" in err
    assert main(["env=CartPole", "policies=random,greedy", f"out={tmp_path / 'x'}"]) == 2
    assert "policies" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "labels=" in capsys.readouterr().out
