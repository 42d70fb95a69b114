"""Reward diagnostics: correlations, ROC-AUC, EPIC distance, label files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from vlmrm.diagnostics import (
    canonicalize,
    diagnose,
    diagnose_scores,
    epic_distance,
    labels_for_video,
    load_labels,
    pearson,
    roc_auc,
    spearman,
)
from vlmrm.errors import ConfigError
from vlmrm.scoring import VideoScores


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.5 * x + rng.normal(size=200)
    y[::7] = y[3]  # ties
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    assert math.isnan(pearson(x, np.ones_like(x)))
    with pytest.raises(ConfigError, match="same length"):
        pearson(x, y[:-1])


def test_roc_auc_is_mann_whitney_probability():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=120), 1)  # rounding makes ties
    labels = (rng.random(120) < 0.3).astype(float)
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(scores, labels) == pytest.approx(brute, abs=1e-12)
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    assert math.isnan(roc_auc([1, 2, 3], [1, 1, 1]))
    with pytest.raises(ConfigError, match="binary"):
        roc_auc([1, 2, 3], [0, 0.5, 1])


def test_epic_distance_definition():
    rng = np.random.default_rng(2)
    r = rng.normal(size=100)
    assert np.allclose(canonicalize(r), r - r.mean())
    w = rng.random(100)
    assert np.allclose(canonicalize(r, w), r - np.average(r, weights=w))
    # invariant to positive affine maps (potential shaping of a state reward = a shift)
    assert epic_distance(r, 3.0 * r + 7.0) == pytest.approx(0.0, abs=1e-7)
    assert epic_distance(r, -r) == pytest.approx(1.0)
    y = r + rng.normal(size=100)
    rho = stats.pearsonr(r - r.mean(), y - y.mean())[0]
    assert epic_distance(r, y) == pytest.approx(math.sqrt((1 - rho) / 2))
    # uniform weights = unweighted
    assert epic_distance(r, y, weights=np.ones(100)) == pytest.approx(epic_distance(r, y))
    assert math.isnan(epic_distance(r, np.zeros(100)))


def test_diagnose_drops_nans_and_explains_undefined_values():
    r = np.array([0.1, 0.2, 0.3, 0.4, np.nan, 0.6])
    y = np.array([0, 0, 1, 1, 1, np.nan])
    d = diagnose(r, y, label="success")
    assert d.n == 4 and d.binary and d.roc_auc == 1.0 and d.note == ""
    assert d.epic_distance < 0.35
    flat = diagnose([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], label="env_reward")
    assert math.isnan(flat.pearson) and math.isnan(flat.roc_auc) and "constant" in flat.note
    cont = diagnose([1.0, 2.0, 3.0, 4.0], [0.1, 0.5, 0.4, 2.0])
    assert not cont.binary and math.isnan(cont.roc_auc) and cont.spearman == pytest.approx(0.8)
    tiny = diagnose([1.0, 2.0], [0, 1])
    assert tiny.n == 2 and "only 2 frames" in tiny.note


def test_load_labels_and_align_by_video_and_frame(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text(
        "video,frame,success,height,comment\n"
        "a.mp4,0,True,1.0,x\n"
        "a.mp4,2,False,0.5,y\n"
        "a.mp4,4,True,0.9,z\n"
        "b.mp4,0,False,0.1,w\n"
    )
    table = load_labels(p)
    assert table.attrs["label_columns"] == ["success", "height"]  # 'comment' is not numeric
    lab = labels_for_video(table, "some/dir/a.mp4", np.array([0, 2, 3, 4]))
    assert lab["success"].tolist()[:2] == [1.0, 0.0] and math.isnan(lab["success"][2])
    assert lab["height"].tolist()[3] == 0.9
    assert labels_for_video(table, "c.mp4", np.array([0])) is None
    only = load_labels(p, columns="height")
    assert only.attrs["label_columns"] == ["height"]

    # without frame/video columns: row i is frame i
    q = tmp_path / "plain.csv"
    q.write_text("reward\n0.5\n0.7\n0.9\n")
    lab = labels_for_video(load_labels(q), "x.mp4", np.array([0, 2, 5]))
    assert lab["reward"][:2].tolist() == [0.5, 0.9] and math.isnan(lab["reward"][2])


@pytest.mark.parametrize(
    ("content", "columns", "message"),
    [
        (None, None, "does not exist"),
        ("", None, "is empty"),
        ("frame,success\n", None, "no rows"),
        ("frame,success\n0,1\n", "reward", "has no column 'reward'"),
        ("frame,comment\n0,abc\n", "comment", "not numeric"),
        ("frame,comment\n0,abc\n", None, "no numeric ground-truth column"),
        ('a,b\n"1,2\n', None, "not a readable CSV"),
    ],
)
def test_unusable_label_files_give_one_line_errors(tmp_path, content, columns, message):
    p = tmp_path / "labels.csv"
    if content is not None:
        p.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_labels(p, columns)
    assert "\n" not in str(info.value)


def test_diagnose_scores_covers_every_combination():
    n = 20
    t = np.arange(n)
    success = (t >= 10).astype(float)
    rewards = (
        np.stack([success + 0.01 * np.sin(t), -success]).reshape(1, 1, 2, n).astype(np.float32)
    )
    scores = VideoScores("v.mp4", t, t / 10, rewards, ["goal"], ["base"], [0.0, 1.0], fps=10.0)
    rows = diagnose_scores(scores, {"success": success})
    assert [(r["alpha"], r["label"]) for r in rows] == [(0.0, "success"), (1.0, "success")]
    assert rows[0]["roc_auc"] == 1.0 and rows[1]["roc_auc"] == 0.0
    assert rows[0]["epic_distance"] < 0.05 and rows[1]["epic_distance"] > 0.95
