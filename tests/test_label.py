"""Labelling sheets (``python -m vlmrm.label``) and agreement with filled sheets
(``python -m vlmrm.label.agreement``), end to end on small videos written here."""

from __future__ import annotations

import csv
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest

import vlmrm
from vlmrm.label import agreement as agreement_cli
from vlmrm.label import cli as label_cli
from vlmrm.label.filled import parse_label
from vlmrm.video import read_video, write_video

GOAL = ["goal=a white square on the right", "baseline=a white square"]
TINY = ["model=vlmrm-tiny", "device=cpu"]
STEPS = (1000, 2000, 3000)


@pytest.fixture()
def sources(tmp_path):
    """A training run's layout (``<run>/videos/step_<N>.mp4``, 10 frames each) and a loose 3-frame video."""
    rng = np.random.default_rng(7)
    run = tmp_path / "runs" / "CartPole-pole-upright"
    for step in STEPS:
        frames = rng.integers(0, 255, (10, 64, 64, 3), dtype=np.uint8)
        write_video(run / "videos" / f"step_{step:09d}.mp4", frames, fps=10)
    (run / "config.yaml").write_text("env: {name: CartPole}\n")
    write_video(tmp_path / "clip.mp4", rng.integers(0, 255, (3, 48, 64, 3), dtype=np.uint8), fps=10)
    return tmp_path, run


def _rows(folder):
    with open(folder / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _sheets(argv, capsys=None) -> int:
    status = label_cli.main([*argv, "progress=false"])
    if capsys is not None:
        capsys.readouterr()
    return status


def _fill(folder, labels: dict[int, str]) -> None:
    rows = _rows(folder)
    for row in rows:
        row["label"] = labels.get(int(row["id"]), "")
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_sheets_from_a_run_and_a_video(sources, capsys):
    root, run = sources
    out = root / "sheets"
    assert _sheets([str(run), str(root / "clip.mp4"), "per_video=4", "per_sheet=9", f"out={out}"], capsys) == 0
    rows = _rows(out)
    # 4 frames from each of the 3 steps, all 3 frames of the short video
    assert len(rows) == 3 * 4 + 3
    assert list(rows[0]) == ["id", "sheet", "label", "note", "video", "frame", "image"]
    assert [int(r["id"]) for r in rows] == list(range(1, 16))
    assert [int(r["sheet"]) for r in rows] == [1] * 9 + [2] * 6
    assert all(r["label"] == "" and r["note"] == "" for r in rows)
    by_video: dict[str, list[int]] = {}
    for r in rows:
        by_video.setdefault(r["video"], []).append(int(r["frame"]))
    steps = [str(run / "videos" / f"step_{s:09d}.mp4") for s in STEPS]
    assert sorted(by_video) == sorted([*steps, str(root / "clip.mp4")])
    assert all(len(set(f)) == 4 and all(0 <= i < 10 for i in f) for v, f in by_video.items() if v in steps)
    assert sorted(by_video[str(root / "clip.mp4")]) == [0, 1, 2]
    # shuffled across videos: the labelling order does not follow the videos
    order = [r["video"] for r in rows]
    assert order != sorted(order)
    # the saved frames are exactly the decoded video frames
    decoded = {v: read_video(v) for v in by_video}
    for r in rows:
        png = iio.imread(out / r["image"])
        np.testing.assert_array_equal(png, decoded[r["video"]][int(r["frame"])])
    # the grids: 3x3 cells, numbered; nothing about the source is written on them
    sheets = sorted(p.name for p in out.glob("sheet_*.png"))
    assert sheets == ["sheet_001.png", "sheet_002.png"]
    first = iio.imread(out / "sheet_001.png")
    assert first.ndim == 3 and first.shape[1] > 3 * 192
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_frames"] == 15 and manifest["n_sheets"] == 2
    assert {v["video"]: v["frames"] for v in manifest["videos"]} == {**{s: 10 for s in steps}, str(root / "clip.mp4"): 3}
    assert not list(root.glob(".sheets*")), "no scratch folder is left behind"


def test_sampling_is_seeded(sources, capsys):
    root, run = sources
    picks = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert _sheets([str(run), "per_video=3", f"seed={seed}", f"out={root / name}"], capsys) == 0
        picks[name] = [(r["video"], r["frame"]) for r in _rows(root / name)]
    assert picks["a"] == picks["b"]
    assert sorted(picks["a"]) != sorted(picks["c"])
    for i in range(1, 10):
        name = f"frames/{i:05d}.png"
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes()


def test_episode_end_takes_the_last_frame_of_each_video(sources, capsys):
    root, run = sources
    out = root / "ends"
    assert _sheets([f"sources=[{run},{root / 'clip.mp4'}]", "sample=episode_end", f"out={out}"], capsys) == 0
    rows = _rows(out)
    assert sorted((r["video"], int(r["frame"])) for r in rows) == sorted(
        [(str(run / "videos" / f"step_{s:09d}.mp4"), 9) for s in STEPS] + [(str(root / "clip.mp4"), 2)]
    )
    last = read_video(root / "clip.mp4")[-1]
    row = next(r for r in rows if r["video"].endswith("clip.mp4"))
    np.testing.assert_array_equal(iio.imread(out / row["image"]), last)


def test_episode_end_notes_runs_with_several_episodes_per_video(sources, capsys):
    root, run = sources
    (run / "config.yaml").write_text("env: {name: CartPole}\neval: {episodes: 3}\n")
    assert label_cli.main([str(run), "sample=episode_end", f"out={root / 'ends'}", "progress=false"]) == 0
    err = capsys.readouterr().err
    assert "hold 3 evaluation episodes each" in err and str(run) in err
    assert label_cli.main([str(run), f"out={root / 'frames'}", "progress=false"]) == 0
    assert "evaluation episodes" not in capsys.readouterr().err


def test_a_folder_of_runs_is_every_run(sources, capsys):
    root, run = sources
    assert _sheets([str(root / "runs"), "sample=episode_end", f"out={root / 'all'}"], capsys) == 0
    assert len(_rows(root / "all")) == len(STEPS)


def test_an_existing_sheet_folder_is_kept_unless_overwrite(sources, capsys):
    root, run = sources
    out = root / "sheets"
    assert _sheets([str(run), f"out={out}"], capsys) == 0
    _fill(out, {1: "yes"})
    before = (out / "labels.csv").read_bytes()
    assert label_cli.main([str(run), f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "overwrite=true" in err[0]
    assert (out / "labels.csv").read_bytes() == before
    assert _sheets([str(run), f"out={out}", "overwrite=true", "seed=1"], capsys) == 0
    assert all(r["label"] == "" for r in _rows(out))
    assert not list(root.glob(".sheets*"))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sample=middle"], "sample='middle' is not one of"),
        (["per_video=0"], "per_video must be an integer >= 1"),
        (["no/such/run"], "'no/such/run' does not exist"),
    ],
)
def test_bad_sheet_settings_are_one_line(sources, capsys, argv, says, monkeypatch):
    root, run = sources
    monkeypatch.chdir(root)
    args = argv if argv[0].startswith("no/") else [str(run), *argv]
    assert label_cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def _labels_for(rows) -> dict[int, str]:
    """A person's judgement, in every accepted spelling; two rows left blank."""
    words = ["yes", "no", "1", "0", "TRUE", " false ", "y", "n"]
    return {int(r["id"]): words[i % len(words)] for i, r in enumerate(rows) if i not in (4, 9)}


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their mean rank."""
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=float)
    for value in np.unique(v):
        ranks[v == value] = ranks[v == value].mean()
    return ranks


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(_average_ranks(x), _average_ranks(y))[0, 1])


def _auc(scores, labels) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_agreement_matches_a_numpy_reference(sources, capsys, tiny_clip):
    root, run = sources
    out = root / "sheets"
    assert _sheets([str(run), str(root / "clip.mp4"), "per_video=4", f"out={out}"], capsys) == 0
    rows = _rows(out)
    judged = _labels_for(rows)
    _fill(out, judged)
    status = agreement_cli.main([str(out / "labels.csv"), *GOAL, "alpha=[0,0.5]", *TINY])
    shown = capsys.readouterr().out
    assert status == 0
    assert "13 labelled frames" in shown and "2 blank rows skipped" in shown and "ROC-AUC" in shown
    report = json.loads((out / "agreement.json").read_text())
    assert report["labelled"] == 13 and report["unlabelled"] == 2

    # reference: CLIPReward on the frames decoded from the videos themselves
    labelled = [r for r in rows if int(r["id"]) in judged and judged[int(r["id"])].strip()]
    y = np.array([1.0 if judged[int(r["id"])].strip().lower() in ("yes", "1", "true", "y") else 0.0
                  for r in labelled])
    decoded = {v: read_video(v) for v in {r["video"] for r in labelled}}
    reward = vlmrm.CLIPReward(tiny_clip, goal="a white square on the right", baseline="a white square")
    for alpha in (0.0, 0.5):
        ref = np.array([float(reward(decoded[r["video"]][int(r["frame"])][None], alpha=alpha)[0]) for r in labelled])
        frames = next(d for d in report["diagnostics"] if d["alpha"] == alpha and d["label"] == "label")
        assert frames["n"] == 13
        assert frames["roc_auc"] == pytest.approx(_auc(ref, y), abs=1e-9)
        assert frames["spearman"] == pytest.approx(_spearman(ref, y), abs=1e-9)
        assert frames["pearson"] == pytest.approx(float(np.corrcoef(ref, y)[0, 1]), abs=1e-5)
        rho = np.corrcoef(ref - ref.mean(), y - y.mean())[0, 1]
        assert frames["epic_distance"] == pytest.approx(math.sqrt((1 - rho) / 2), abs=1e-5)
        # per video: success rate and mean reward
        for video in decoded:
            m = np.array([r["video"] == video for r in labelled])
            row = next(p for p in report["per_video"] if p["video"] == video and p["alpha"] == alpha)
            assert row["labelled"] == int(m.sum()) and row["success_rate"] == pytest.approx(y[m].mean())
            assert row["mean_reward"] == pytest.approx(ref[m].mean(), abs=1e-5)
        with open(out / "rewards.csv", newline="") as fh:
            got = {int(r["id"]): float(r["reward"]) for r in csv.DictReader(fh) if float(r["alpha"]) == alpha}
        np.testing.assert_allclose([got[int(r["id"])] for r in labelled], ref, atol=1e-5)


def test_a_bad_label_is_one_line_naming_the_row(sources, capsys):
    root, run = sources
    out = root / "sheets"
    assert _sheets([str(run), f"out={out}"], capsys) == 0
    _fill(out, {1: "yes", 2: "maybe", 3: "no"})
    assert agreement_cli.main([str(out), *GOAL, *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: labels.csv line 3 (id 2): label 'maybe' is not one of yes/no, 1/0 or true/false "
                   "(blank: not labelled)"]


def test_a_missing_frame_file_is_one_line(sources, capsys):
    root, run = sources
    out = root / "sheets"
    assert _sheets([str(run), f"out={out}"], capsys) == 0
    _fill(out, {1: "yes", 2: "no", 3: "no"})
    (out / "frames" / "00002.png").unlink()
    assert agreement_cli.main([str(out / "labels.csv"), *GOAL, *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 3 (id 2)" in err[0] and "00002.png" in err[0] and "is missing" in err[0]


def test_an_unfilled_sheet_is_one_line(sources, capsys):
    root, run = sources
    out = root / "sheets"
    assert _sheets([str(run), f"out={out}"], capsys) == 0
    assert agreement_cli.main([str(out / "labels.csv"), *GOAL, *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no frame" in err[0] and "12 blank" in err[0]


def test_label_spellings():
    assert [parse_label(v) for v in ("yes", " YES ", "1", "True", "y")] == [1] * 5
    assert [parse_label(v) for v in ("no", "0", "FALSE", "n")] == [0] * 4
    assert [parse_label(v) for v in ("", "  ", None)] == [None] * 3
    for bad in ("maybe", "2", "0.5", "yess"):
        with pytest.raises(ValueError):
            parse_label(bad)


def test_package_face_resolves_lazily():
    import vlmrm.label as label

    for name in label.__all__:
        assert callable(getattr(label, name)), name
    with pytest.raises(AttributeError):
        label.no_such_name  # noqa: B018
