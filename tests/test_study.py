"""``evaluations.jsonl`` of training runs and ``python -m vlmrm.study`` on sweep folders.

The runs are real: six tiny ``reward=ground_truth`` CartPole trainings (2 settings × 3
seeds). Their ``evaluations.jsonl`` is checked against TensorBoard and the final
evaluation; then each test copies them into a sweep folder with a hand-written
``sweep.json`` (the contract of the sweep module) and known final returns, and checks
the study's numbers against an independent NumPy computation of the same IQM and
percentile bootstrap.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _python import run_python
from _runs import tb_scalars
from test_report_html import browser  # noqa: F401 - the scoring report's headless Chromium fixture

from vlmrm.study import statistics
from vlmrm.study.cli import main as study_main
from vlmrm.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_thread")

#: the swept setting (a real training key) and its two values
KEY, VALUES = "agent.gamma", ("0.9", "0.99")
SEEDS = (0, 1, 2)
TRAIN = ["env=CartPole", "reward=ground_truth", "total_steps=64", "n_envs=2", "eval.every=16",
         "eval.episodes=1", "eval.video=false", "progress=false", "checkpoint_every=0",
         "env.episode_length=16"]
#: known final returns written into the runs: (setting, seed) -> (gt_return, clip_return)
FINAL = {
    ("0.9", 0): (10.0, 1.5), ("0.9", 1): (200.0, 2.5), ("0.9", 2): (30.0, 0.25),
    ("0.99", 0): (50.0, 3.0), ("0.99", 1): (55.0, -1.0), ("0.99", 2): (400.0, 2.0),
}
REPS = 500


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The six runs: {(setting, seed): (run folder, what training printed)}."""
    root = tmp_path_factory.mktemp("trained")
    runs = {}
    for value in VALUES:
        for seed in SEEDS:
            name = f"gamma{value}-seed{seed}"
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = train_main(TRAIN + [f"{KEY}={value}", f"seed={seed}", f"out={root}", f"run_name={name}"])
            assert rc == 0, err.getvalue()
            runs[value, seed] = (root / name, err.getvalue())
    return runs


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]


def test_evaluations_jsonl_holds_what_tensorboard_and_the_final_evaluation_report(trained):
    for run, printed in trained.values():
        recs = _records(run)
        periodic = [r for r in recs if not r["final"]]
        finals = [r for r in recs if r["final"]]
        # every eval.every=16 steps (2 envs: 16, 32, 48, 64), then the final evaluation at the end
        assert [r["step"] for r in periodic] == [16, 32, 48, 64]
        assert len(finals) == 1 and recs[-1] is finals[0]
        final = finals[0]
        latest = json.loads((run / "checkpoints" / "latest.json").read_text())
        assert final["step"] == latest["step"] == 64  # the final checkpoint's step
        # TensorBoard logged each evaluation at its step (the final one last, at the same step)
        tb = tb_scalars(run)["eval/gt_return"]
        assert [s for s, _ in tb] == [r["step"] for r in recs]
        np.testing.assert_allclose([v for _, v in tb], [r["gt_return"] for r in recs], rtol=1e-6)
        np.testing.assert_allclose(
            [v for _, v in tb_scalars(run)["eval/ep_length"]], [r["ep_length"] for r in recs], rtol=1e-6
        )
        said = re.search(r"final evaluation: ground-truth return ([-\d.e+]+)", printed)
        assert said and float(said.group(1)) == pytest.approx(final["gt_return"], rel=1e-3)
        assert all(r["clip_return"] is None and r["episodes"] == 1 for r in recs)  # ground truth
        assert all(abs(r["time"] - time.time()) < 3600 for r in recs)


def test_append_jsonl_survives_a_line_cut_short(tmp_path):
    from vlmrm.runtime.atomic import append_jsonl, read_jsonl

    path = tmp_path / "evaluations.jsonl"
    append_jsonl(path, {"step": 1})
    with open(path, "a") as fh:
        fh.write('{"step": 2, "gt_ret')  # killed in the middle of a write
    append_jsonl(path, {"step": 3})
    records, bad = read_jsonl(path)
    assert records == [{"step": 1}, {"step": 3}] and bad == 1


# --------------------------------------------------------------------------- sweep folders


def _swept_record(value: str, seed: int) -> dict:
    return {"seed": str(seed), KEY: value}


def make_sweep(trained, folder: Path, states: dict[int, str] | None = None,
               errors: dict[int, str] | None = None, clip: bool = True) -> Path:
    """A sweep folder: the runs copied to runs/NNN, known returns, a sweep.json by hand.

    Every evaluation of job (setting, seed) is rewritten to ``final × step / 64`` (so the
    curves are known too); ``clip=False`` keeps the runs' null CLIP returns.
    """
    states, errors = states or {}, errors or {}
    jobs = []
    for index, (value, seed) in enumerate((v, s) for v in VALUES for s in SEEDS):
        run_dir = f"runs/{index:03d}"
        state = states.get(index, "done")
        gt, cr = FINAL[value, seed]
        if state != "pending":
            shutil.copytree(trained[value, seed][0], folder / run_dir)
            recs = _records(folder / run_dir)
            with open(folder / run_dir / "evaluations.jsonl", "w") as fh:
                for r in recs:
                    r["gt_return"] = gt * r["step"] / 64
                    r["clip_return"] = cr * r["step"] / 64 if clip else None
                    fh.write(json.dumps(r) + "\n")
        jobs.append({
            "index": index, "swept": _swept_record(value, seed),
            "argv": TRAIN + [f"{KEY}={value}", f"seed={seed}"], "run_dir": run_dir, "state": state,
            "started": 1765050001.0 if state != "pending" else None,
            "ended": 1765050100.0 if state in ("done", "failed") else None,
            "job_id": f"123_{index}", "requeues": 0, "error": errors.get(index),
            "result": {"steps": 64, "final_eval": {"gt_return": gt, "clip_return": cr if clip else None,
                                                   "success_rate": None}} if state == "done" else None,
        })
    doc = {
        "version": 1, "command": "train",
        "command_line": f"python -m vlmrm.train -m {' '.join(TRAIN)} {KEY}={','.join(VALUES)} seed=0,1,2",
        "argv": TRAIN, "name": folder.name, "created": 1765050000.0,
        "launcher": {"name": "submitit_local", "parallel": 2},
        "swept_keys": [KEY, "seed"], "jobs": jobs,
    }
    (folder / "sweep.json").write_text(json.dumps(doc, indent=2))
    return folder


def hand_iqm(x) -> float:
    """Interquartile mean by hand: sort, drop floor(n/4) values at each end, average."""
    x = np.sort(np.asarray(x, np.float64))
    k = len(x) // 4
    return float(x[k: len(x) - k].mean())


def hand_interval(x, reps: int, seed: int, draw: str) -> np.ndarray:
    """The 95% percentile bootstrap of the IQM, resampling the seeds as each backend does.

    rliable (``StratifiedBootstrap.update_indices``) draws ``np.random.choice(n, (n, 1))``
    per resample from NumPy's global generator seeded with ``seed``; scipy's ``bootstrap``
    draws all resamples at once, ``rng.integers(0, n, (reps, n))`` from ``default_rng(seed)``.
    """
    x = np.asarray(x, np.float64)
    n = len(x)
    if draw == "rliable":
        rs = np.random.RandomState(seed)
        picks = [rs.choice(n, (n, 1), replace=True)[:, 0] for _ in range(reps)]
    else:
        picks = np.random.default_rng(seed).integers(0, n, (reps, n))
    return np.percentile([hand_iqm(x[p]) for p in picks], [2.5, 97.5])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _study(argv, capsys) -> tuple[int, str, str]:
    rc = study_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def use_rliable(monkeypatch):
    """The rliable path (skipped where rliable does not import)."""
    monkeypatch.setattr(statistics, "_FALLBACK", [])
    if statistics.rliable_problem() is not None:
        pytest.skip(f"rliable does not import here: {statistics.rliable_problem()}")


@pytest.fixture
def without_rliable(monkeypatch):
    """The scipy path: ``import rliable`` fails as where it is not installed."""
    monkeypatch.setitem(sys.modules, "rliable", None)
    monkeypatch.setattr(statistics, "_FALLBACK", [])
    assert statistics.backend() == "scipy"


@pytest.mark.parametrize("backend", ["rliable", "scipy"])
def test_a_finished_sweep_gives_the_hand_computed_iqm_and_interval(trained, tmp_path, capsys, request, backend):
    request.getfixturevalue("use_rliable" if backend == "rliable" else "without_rliable")
    folder = make_sweep(trained, tmp_path / "sweep")
    rc, out, err = _study([folder, f"reps={REPS}", "seed=7"], capsys)
    assert rc == 0, err
    rows = read_csv(folder / "study.csv")
    assert list(rows[0]) == ["metric", KEY, "n", "iqm", "ci_low", "ci_high", "mean", "std", "median",
                             "partial", "failed"]
    # one row per setting and metric, settings in sweep order, gt_return first
    assert [(r["metric"], r[KEY]) for r in rows] == [
        ("gt_return", "0.9"), ("gt_return", "0.99"), ("clip_return", "0.9"), ("clip_return", "0.99")]
    for row in rows:
        m = 0 if row["metric"] == "gt_return" else 1
        x = [FINAL[row[KEY], s][m] for s in SEEDS]
        assert row["n"] == "3" and row["partial"] == "false" and row["failed"] == "0"
        assert float(row["iqm"]) == pytest.approx(hand_iqm(x), rel=1e-12)
        lo, hi = hand_interval(x, REPS, 7, backend)
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((lo, hi), rel=1e-12)
        assert lo < float(row["iqm"]) < hi
        assert float(row["mean"]) == pytest.approx(np.mean(x))
        assert float(row["std"]) == pytest.approx(np.std(x, ddof=1))
        assert float(row["median"]) == pytest.approx(np.median(x))
    assert ("note: rliable is not importable" in err) == (backend == "scipy")
    assert f"({backend}, {REPS} resamples, seed 7)" in " ".join(out.split())
    for row in rows:  # the console prints every row's numbers
        assert re.search(rf"{re.escape(row[KEY])}\s*│\s*3\s*│\s*{float(row['iqm']):.6g}\s*│", out)
    png = (folder / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (folder / "study.html").is_file()


@pytest.mark.parametrize("backend", ["rliable", "scipy"])
def test_iqm_cuts_a_quarter_at_each_end(request, backend):
    request.getfixturevalue("use_rliable" if backend == "rliable" else "without_rliable")
    x = np.array([3.0, -50.0, 7.0, 1.0, 9.0, 400.0, 4.0, 6.0])  # 8 seeds: 2 cut at each end
    est = statistics.estimate(x, reps=300, seed=3)
    assert float(est.iqm[0]) == pytest.approx(hand_iqm(x)) == pytest.approx(np.mean([3, 7, 4, 6]))
    np.testing.assert_allclose([est.low[0], est.high[0]], hand_interval(x, 300, 3, backend), rtol=1e-12)
    # a column per step: each its own IQM; one seed has no interval
    steps = statistics.estimate(np.stack([x, 2 * x], axis=1), reps=300, seed=3)
    np.testing.assert_allclose(steps.iqm, [hand_iqm(x), hand_iqm(2 * x)])
    one = statistics.estimate(np.array([5.0]))
    assert one.iqm[0] == 5.0 and np.isnan(one.low[0]) and np.isnan(one.high[0])


def test_the_same_seed_gives_the_same_study(trained, tmp_path, capsys):
    folder = make_sweep(trained, tmp_path / "sweep")
    assert _study([folder, "reps=300"], capsys)[0] == 0
    first = (folder / "study.csv").read_text()
    state = np.random.get_state()[1].copy()
    assert _study([folder, "reps=300"], capsys)[0] == 0
    assert (folder / "study.csv").read_text() == first
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the global RNG is left alone
    assert _study([folder, "reps=300", f"out={tmp_path / 'other'}"], capsys)[0] == 0
    assert (tmp_path / "other" / "study.csv").read_text() == first
    # (3 seeds have few distinct resamples: the seed shows with more of them)
    x = np.arange(12.0) ** 2
    assert statistics.estimate(x, 300, seed=0).low != statistics.estimate(x, 300, seed=1).low


def test_curves_are_the_iqm_over_seeds_at_each_evaluation(trained, tmp_path):
    from vlmrm.study import aggregate
    from vlmrm.study.reading import read_sweep

    folder = make_sweep(trained, tmp_path / "sweep")
    # a run that crashed after evaluating step 32 and resumed evaluates it again: the last counts;
    # a line cut short by a kill is skipped (and said)
    log = folder / "runs/000/evaluations.jsonl"
    log.write_text('{"step": 32, "gt_return": 9999.0, "final": false}\n' + log.read_text() + '{"step": 80, "gt')
    sweep = read_sweep(folder)
    assert sweep.notes == [f"{log}: skipped 1 damaged line(s)"]
    study = aggregate.study(sweep, None, ["gt_return"], reps=300, seed=0)
    assert [c.setting for c in study.curves] == [{KEY: v} for v in VALUES]
    for curve in study.curves:
        assert list(curve.steps) == [16, 32, 48, 64] and curve.seeds == 3
        finals = [FINAL[curve.setting[KEY], s][0] for s in SEEDS]
        want = [hand_iqm([f * step / 64 for f in finals]) for step in curve.steps]
        np.testing.assert_allclose(curve.estimate.iqm, want)
        assert np.all(curve.estimate.low <= curve.estimate.iqm) and np.all(curve.estimate.iqm <= curve.estimate.high)


def test_group_by_chosen_keys_and_metric(trained, tmp_path, capsys):
    folder = make_sweep(trained, tmp_path / "sweep")
    rc, _, err = _study([folder, "by=seed", "metric=clip_return", "reps=200"], capsys)
    assert rc == 0, err
    rows = read_csv(folder / "study.csv")
    assert [(r["metric"], r["seed"], r["n"]) for r in rows] == [("clip_return", str(s), "2") for s in SEEDS]
    for r in rows:
        x = [FINAL[v, int(r["seed"])][1] for v in VALUES]
        assert float(r["iqm"]) == pytest.approx(np.mean(x))
    # both keys: one job per group
    assert _study([folder, f"by={KEY},seed", "metric=gt_return", "reps=200"], capsys)[0] == 0
    rows = read_csv(folder / "study.csv")
    assert len(rows) == 6 and {r["n"] for r in rows} == {"1"} and {r["ci_low"] for r in rows} == {""}


def test_a_running_sweep_is_reported_partial_and_failed_jobs_are_listed(trained, tmp_path, capsys):
    # job 1 (0.9, seed 1) still running, job 2 pending, job 4 (0.99, seed 1) failed
    folder = make_sweep(trained, tmp_path / "sweep", states={1: "running", 2: "pending", 4: "failed"},
                        errors={4: "error: env='Nope-v0' is not a registered Gymnasium id"})
    rc, out, err = _study([folder, "metric=gt_return", "reps=200"], capsys)
    assert rc == 0, err
    rows = {r[KEY]: r for r in read_csv(folder / "study.csv")}
    assert rows["0.9"]["n"] == "1" and rows["0.9"]["partial"] == "true" and rows["0.9"]["failed"] == "0"
    assert float(rows["0.9"]["iqm"]) == FINAL["0.9", 0][0] and rows["0.9"]["ci_low"] == ""
    assert rows["0.99"]["n"] == "2" and rows["0.99"]["partial"] == "false" and rows["0.99"]["failed"] == "1"
    assert float(rows["0.99"]["iqm"]) == pytest.approx(np.mean([FINAL["0.99", 0][0], FINAL["0.99", 2][0]]))
    text = " ".join(out.split())
    assert "(PARTIAL)" in text and "partial: 3 of 6 jobs finished (3 done, 1 running, 1 pending, 1 failed)" in text
    assert "partial: 2 jobs unfinished" in text and "1 failed" in text
    assert f"not aggregated: job 4 (seed=1, {KEY}=0.99): failed: error: env='Nope-v0'" in err
    page = (folder / "study.html").read_text()
    assert 'class="partial"' in page and "3 of 6 jobs finished" in page and "Nope-v0" in page


def test_a_setting_with_no_finished_job_keeps_its_row(trained, tmp_path, capsys):
    folder = make_sweep(trained, tmp_path / "sweep", states={3: "pending", 4: "running", 5: "failed"})
    rc, out, err = _study([folder, "reps=200"], capsys)
    assert rc == 0, err
    rows = [r for r in read_csv(folder / "study.csv") if r[KEY] == "0.99"]
    assert [r["metric"] for r in rows] == ["gt_return", "clip_return"]
    for r in rows:
        assert (r["n"], r["iqm"], r["ci_low"], r["mean"], r["partial"], r["failed"]) == ("0", "", "", "", "true", "1")
    assert "partial: 2 jobs unfinished; 1 failed" in " ".join(out.split())


def test_a_done_job_without_evaluations_falls_back_to_sweep_json_or_is_listed(trained, tmp_path, capsys):
    folder = make_sweep(trained, tmp_path / "sweep")
    (folder / "runs/000/evaluations.jsonl").unlink()  # the result in sweep.json still has it
    doc = json.loads((folder / "sweep.json").read_text())
    doc["jobs"][1]["result"] = None
    (folder / "runs/001/evaluations.jsonl").write_text('{"step": 16, "gt_return": 1.0, "final": false}\n')
    (folder / "sweep.json").write_text(json.dumps(doc))
    rc, _, err = _study([folder, "metric=gt_return", "reps=200"], capsys)
    assert rc == 0, err
    row = read_csv(folder / "study.csv")[0]
    assert row["n"] == "2" and float(row["iqm"]) == pytest.approx(np.mean([10.0, 30.0]))
    assert "not aggregated: job 1 (seed=1, agent.gamma=0.9): no final evaluation in" in err


def _error(rc: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_bad_input_is_one_error_line(trained, tmp_path, capsys):
    run = trained["0.9", 0][0]
    cases = [
        ([tmp_path / "missing"], r"does not exist; pass a sweep folder"),
        ([run], r"is a training run folder, not a sweep folder; pass the folder holding sweep.json"),
        ([tmp_path], r"is not a sweep folder \(no sweep.json\)"),
        ([run, run], r"one sweep folder at a time"),
        ([tmp_path, "reps=3"], r"reps must be an integer >= 100"),
        ([tmp_path, "metric=return"], r"metric='return' is not one of: gt_return, clip_return"),
        ([tmp_path, "bye=seed"], r"unknown setting 'bye' \(did you mean 'by'\?\)"),
    ]
    for argv, pattern in cases:
        assert re.search(pattern, _error(*_study(argv, capsys)[:3:2])), argv

    folder = make_sweep(trained, tmp_path / "sweep", clip=False)
    assert re.search(r"by='alpha' is not a swept setting of .* \(swept: agent.gamma, seed\)",
                     _error(*_study([folder, "by=alpha"], capsys)[:3:2]))
    assert re.search(r"metric=clip_return: no finished job reports it",
                     _error(*_study([folder, "metric=clip_return"], capsys)[:3:2]))
    assert re.search(r"holds sweeps, not a sweep's sweep.json; pass one of them, e.g. .*sweep",
                     _error(*_study([tmp_path], capsys)[:3:2]))

    sweep_json = folder / "sweep.json"
    doc = json.loads(sweep_json.read_text())
    sweep_json.write_text(json.dumps(doc)[:-40])
    assert re.search(r"sweep.json is damaged \(not JSON: .*\); restore it from a copy",
                     _error(*_study([folder], capsys)[:3:2]))
    sweep_json.write_text(json.dumps({**doc, "jobs": {"0": 1}}))
    assert re.search(r"is damaged \(no job list\)", _error(*_study([folder], capsys)[:3:2]))
    sweep_json.write_text(json.dumps({**doc, "jobs": [{**doc["jobs"][0], "state": "sleeping"}]}))
    assert re.search(r"job 0 lacks its swept values, a known state", _error(*_study([folder], capsys)[:3:2]))
    for job in doc["jobs"]:
        job["state"], job["result"] = ("pending" if job["index"] % 2 else "running"), None
    sweep_json.write_text(json.dumps(doc))
    assert re.search(r"no job of .* has finished yet \(3 running, 3 pending\); run the study again",
                     _error(*_study([folder], capsys)[:3:2]))
    for job in doc["jobs"]:
        job["state"], job["error"] = "failed", "error: out of memory"
    sweep_json.write_text(json.dumps(doc))
    assert re.search(r"every job of .* failed \(job 0 \(seed=0, agent.gamma=0.9\): error: out of memory\); "
                     r"fix the cause, then .* -m resume=", _error(*_study([folder], capsys)[:3:2]))
    assert not (folder / "study.csv").exists()


def test_help_and_a_whole_study_import_no_torch(trained, tmp_path):
    folder = make_sweep(trained, tmp_path / "sweep")
    code = (
        "import sys; from vlmrm.cli import main; "
        f"assert main(['study', '--help']) == 0; assert main(['study', {str(folder)!r}, 'reps=100']) == 0; "
        "print('torch' in sys.modules)"
    )
    done = run_python(code)
    assert "usage: python -m vlmrm.study [SWEEP ...] key=value" in done.stdout
    assert "python -m vlmrm.study runs/multirun/alpha-sweep" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "False"  # torch never imported
    assert (folder / "study.csv").is_file()


# --------------------------------------------------------------------------- the page, in a browser


def test_the_page_opens_offline_with_its_plot_and_the_csv_numbers(trained, tmp_path_factory, request):
    chromium = request.getfixturevalue("browser")  # skips, saying why, without a Chromium
    folder = make_sweep(trained, tmp_path_factory.mktemp("page") / "sweep")
    assert study_main([str(folder), "reps=300"]) == 0
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    problems, requests = [], []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
               else route.abort())
    try:
        page.goto((folder / "study.html").as_uri())
        page.wait_for_function("document.querySelector('img.curves').complete", timeout=10_000)
        assert problems == [] and all(u.startswith(("file:", "data:")) for u in requests), requests
        assert page.title() == "Sweep study: sweep"
        # the plot: the very bytes of curves.png, decoded by the browser and shown
        img = page.locator("img.curves")
        assert img.is_visible()
        w, h, src = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.src]")
        png = (folder / "curves.png").read_bytes()
        assert (w, h) == (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) and w > 0 < h
        import base64

        assert base64.b64decode(src.split(",", 1)[1]) == png
        box = img.bounding_box()
        assert box["width"] > 300 and box["height"] > 200
        # the table: the CSV's rows, its numbers as printed (6 significant digits)
        head, rows = page.evaluate(
            """[Array.from(document.querySelectorAll('table.study th')).map(c => c.textContent),
                Array.from(document.querySelectorAll('table.study tbody tr')).map(r =>
                  Array.from(r.cells).map(c => c.textContent))]"""
        )
        assert head == ["metric", KEY, "n", "IQM", "CI low", "CI high", "mean", "std", "median"]
        csv_rows = read_csv(folder / "study.csv")
        assert len(rows) == len(csv_rows) == 4
        for cells, want in zip(rows, csv_rows, strict=True):
            assert cells[:3] == [want["metric"], want[KEY], want["n"]]
            for cell, key in zip(cells[3:], ("iqm", "ci_low", "ci_high", "mean", "std", "median"), strict=True):
                assert float(cell) == pytest.approx(float(want[key]), rel=1e-5), key
        assert page.locator(".partial").count() == 0  # a finished sweep is not marked partial
    finally:
        context.close()
