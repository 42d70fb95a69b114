"""``report=html``: the page, checked in a real headless Chromium against the run's JSON.

The browser tests need the ``playwright`` Python package (the ``dev`` extra) and a
Chromium on the machine (Debian/Ubuntu: ``apt-get install chromium``; or point
``VLMRM_CHROMIUM`` at any Chromium/Chrome binary). Playwright drives that binary: no
browser is downloaded. Without either, they are skipped, saying which is missing.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

import vlmrm  # noqa: F401 - before any env (import order, see vlmrm.envs)
from vlmrm import score as score_cli
from vlmrm.cli.args import parse_settings
from vlmrm.errors import ConfigError
from vlmrm.video import read_video, write_video

TINY = ["model=vlmrm-tiny", "device=cpu", "progress=false"]
GOALS = ["goal=[a white square on the right,a white square on the left]", "baseline=a white square"]
ALPHAS = [0.0, 0.5, 1.0]
#: the two videos: (file, frames, fps)
VIDEOS = [("move.mp4", 12, 6.0), ("slow.webm", 10, 5.0)]

pytestmark = pytest.mark.usefixtures("one_thread")


def _frames(n: int, size: int = 64) -> np.ndarray:
    """A white square moving left to right."""
    f = np.zeros((n, size, size, 3), np.uint8)
    for t in range(n):
        x = int(t * (size - 16) / (n - 1))
        f[t, 24:40, x : x + 16] = 255
    return f


def _chromium() -> str | None:
    found = os.environ.get("VLMRM_CHROMIUM")
    if found:
        return found
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def browser():
    """A headless system Chromium driven by Playwright; skipped (with the reason) without one."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser tests need playwright (pip install -e '.[dev]')"
    )
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "the browser tests need Chromium (apt-get install chromium, or VLMRM_CHROMIUM=path)"
        )
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - a broken browser install is a skip, not a failure
            pytest.skip(f"Chromium at {exe} does not start: {str(exc).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two short videos scored for 2 goals × 3 α, with labels, into JSON and report.html."""
    d = tmp_path_factory.mktemp("report")
    for name, n, fps in VIDEOS:
        write_video(d / name, _frames(n), fps=fps)
    frame = np.arange(12)
    pd.DataFrame({"frame": frame, "success": (frame >= 6).astype(int)}).to_csv(
        d / "labels.csv", index=False
    )
    argv = [str(d / name) for name, _, _ in VIDEOS] + TINY + GOALS
    argv += [f"alpha={ALPHAS}", f"labels={d / 'labels.csv'}", "format=json", "report=html"]
    argv += [f"out={d / 'out'}", "plot=false"]
    assert score_cli.main(argv) == 0
    doc = json.loads((d / "out" / "scores.json").read_text())
    return d / "out" / "report.html", doc


@pytest.fixture(scope="module")
def page(browser, run):
    """The page, opened from its file with every network request refused and every request,
    console message and script error recorded."""
    html_path, _ = run
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.problems, pg.requests = [], []
    pg.on("console", lambda m: m.type in ("error", "warning") and pg.problems.append(m.text))
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.on("request", lambda r: pg.requests.append(r.url))

    def only_the_file(route):
        url = route.request.url
        route.continue_() if url.startswith(("file:", "data:")) else route.abort()

    pg.route("**/*", only_the_file)
    pg.goto(html_path.as_uri())
    pg.wait_for_function(
        "Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 2)",
        timeout=20_000,
    )
    yield pg
    context.close()


def test_page_loads_offline_without_errors(page, run):
    html_path, doc = run
    assert page.problems == []
    assert all(u == html_path.as_uri() or u.startswith("data:") for u in page.requests), (
        page.requests
    )
    text = html_path.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing outside the file
    videos = page.evaluate(
        "Array.from(document.querySelectorAll('video')).map(v => [v.duration, v.videoHeight, v.error])"
    )
    assert len(videos) == len(VIDEOS)
    for (duration, height, error), (_, n, fps) in zip(videos, VIDEOS, strict=True):
        assert error is None and height == 64  # small videos keep their size
        assert duration == pytest.approx(n / fps, abs=1.5 / fps)


def _points(d: str) -> np.ndarray:
    return np.array([[float(a), float(b)] for a, b in re.findall(r"[ML]([-\d.]+) ([-\d.]+)", d)])


def test_one_curve_per_goal_and_alpha_with_the_json_values(page, run):
    _, doc = run
    sections = page.evaluate(
        """Array.from(document.querySelectorAll('section.video')).map(s =>
             Array.from(s.querySelectorAll('svg.panel')).map(p => ({
               data: Object.assign({}, p.dataset),
               curves: Array.from(p.querySelectorAll('path.curve')).map(c =>
                 ({d: c.getAttribute('d'), goal: +c.dataset.goal, length: c.getTotalLength(),
                   y0: +c.dataset.y0, y1: +c.dataset.y1})),
               truth: p.querySelectorAll('path.truth').length})))"""
    )
    assert len(sections) == len(doc["videos"])
    for panels, video in zip(sections, doc["videos"], strict=True):
        times = np.array(video["times"])
        assert len(panels) == len(ALPHAS)
        for ai, panel in enumerate(panels):
            p = {k: float(v) for k, v in panel["data"].items() if k != "scale"}
            assert p["alpha"] == ALPHAS[ai]
            assert len(panel["curves"]) == 2 and panel["truth"] == 1  # 2 goals, 1 label column
            for curve in panel["curves"]:
                assert curve["length"] > 0  # drawn
                # scores.json lists the combinations goal-major, then baseline, then α
                want = video["curves"][curve["goal"] * len(ALPHAS) + ai]
                assert want["alpha"] == ALPHAS[ai]
                want = want["rewards"]
                xy = _points(curve["d"])
                # back from SVG units to seconds and rewards with the panel's own axes
                x = p["x0"] + (xy[:, 0] - p["left"]) / (p["right"] - p["left"]) * (
                    p["x1"] - p["x0"]
                )
                # two goals: each curve on its own scale, its min to max padded by 5 % of its span
                span = max(want) - min(want)
                assert panel["data"]["scale"] == "own"
                assert curve["y0"] == pytest.approx(min(want) - 0.05 * span, abs=1e-6 * span)
                assert curve["y1"] == pytest.approx(max(want) + 0.05 * span, abs=1e-6 * span)
                y0, y1 = curve["y0"], curve["y1"]
                y = y1 - (xy[:, 1] - p["top"]) / (p["bottom"] - p["top"]) * (y1 - y0)
                np.testing.assert_allclose(x, times, atol=1e-4 * (times[-1] - times[0]))
                np.testing.assert_allclose(y, want, atol=1e-3 * span + 1e-9)


def _overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    """Pairs of boxes (``{x, y, width, height, text}``) whose areas intersect."""
    hits = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
                    and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]):
                hits.append((a["text"], b["text"]))
    return hits


@pytest.mark.parametrize("width", [1200, 700])
def test_no_text_of_a_panel_overlaps_another(page, width):
    """The rotated y-axis title, the y tick labels and the x tick labels, as the browser lays
    them out (rendered boxes, not our estimate of them), at a wide and a narrow window."""
    page.set_viewport_size({"width": width, "height": 900})
    panels = page.evaluate(
        """Array.from(document.querySelectorAll('svg.panel')).map(p =>
             Array.from(p.querySelectorAll('text')).map(t => {
               const r = t.getBoundingClientRect();
               return {x: r.x, y: r.y, width: r.width, height: r.height, text: t.textContent};
             }))"""
    )
    assert panels and all(len(texts) == 3 + 5 + 2 for texts in panels)  # 3 y ticks, 5 x ticks, 2 titles
    for texts in panels:
        assert all(t["width"] > 0 and t["height"] > 0 for t in texts)
        assert _overlaps(texts) == [], texts
    page.set_viewport_size({"width": 1200, "height": 900})


def test_long_tick_labels_keep_clear_of_the_axis_title(browser, tmp_path):
    """One curve (its own axis) whose rewards differ in the 7th decimal: the widest tick labels
    the page writes, which reached into the rotated y-axis title before the plot moved right."""
    from types import SimpleNamespace

    from vlmrm.scoring.html_report import page_entry, render_page
    from vlmrm.scoring.outputs import ScoreRun
    from vlmrm.scoring.scores import VideoScores

    n = 9
    rewards = (-0.1234567 + 3e-7 * np.sin(np.arange(n))).reshape(1, 1, 1, n)
    scores = VideoScores(video=str(tmp_path / "gone.mp4"), frames=np.arange(n), times=np.arange(n) / 10.0,
                         rewards=rewards.astype(np.float64), goals=["g"], baselines=["b"], alphas=[0.5], fps=10.0)
    settings = SimpleNamespace(model="vlmrm-tiny", goal="g", baseline="b", alpha=[0.5])
    text = render_page(settings, ScoreRun(summary=scores.summary()), [page_entry("gone", scores, None)])
    context = browser.new_context(viewport={"width": 700, "height": 600})
    try:
        pg = context.new_page()
        pg.set_content(text)
        texts = pg.evaluate(
            """Array.from(document.querySelectorAll('svg.panel text')).map(t => {
                 const r = t.getBoundingClientRect();
                 return {x: r.x, y: r.y, width: r.width, height: r.height, text: t.textContent}; })"""
        )
    finally:
        context.close()
    assert max(len(t["text"]) for t in texts) >= 11, texts  # e.g. -0.12345670
    assert _overlaps(texts) == [], texts


def test_the_controls_sit_below_the_frame_and_work(page, run):
    """No browser controls drawn over the picture: the page's play button and frame slider are
    below it; the slider seeks (the marker follows) and the button plays."""
    _, doc = run
    boxes = page.evaluate(
        """Array.from(document.querySelectorAll('section.video')).map(s => {
             const box = e => { const r = e.getBoundingClientRect();
                                return {x: r.x, y: r.y, width: r.width, height: r.height, text: e.tagName}; };
             const v = s.querySelector('video');
             return {controls: v.controls, video: box(v), play: box(s.querySelector('button.play')),
                     seek: box(s.querySelector('input.seek')), max: +s.querySelector('input.seek').max};
           })"""
    )
    assert len(boxes) == len(VIDEOS)
    for b, (_, n, _) in zip(boxes, VIDEOS, strict=True):
        assert b["controls"] is False  # the browser's own bar would cover the frame's bottom
        assert b["video"]["height"] >= 200  # a 64 px video is shown large enough to look at
        for c in (b["play"], b["seek"]):
            assert c["height"] > 0 and c["y"] >= b["video"]["y"] + b["video"]["height"]
            assert _overlaps([b["video"], c]) == []
        assert b["max"] == n - 1
    page.evaluate("""(() => { const s = document.querySelectorAll('input.seek')[0];
                       s.value = 7; s.dispatchEvent(new Event('input')); })()""")
    page.wait_for_function("document.querySelectorAll('section.video')[0].dataset.shown === '7'", timeout=5000)
    fps = VIDEOS[0][2]
    assert page.evaluate("document.querySelectorAll('video')[0].currentTime") == pytest.approx(7.5 / fps, abs=1e-3)
    page.locator("button.play").nth(0).click()
    page.wait_for_function(
        "(() => { const v = document.querySelectorAll('video')[0]; return !v.paused || v.ended; })()", timeout=5000
    )
    page.evaluate("document.querySelectorAll('video')[0].pause()")


def test_two_goals_each_fill_their_panel(page, run):
    """Two goals on one shared scale looked flat (their levels differ far more than a frame's
    reward moves): each curve now spans the plot from its minimum to its maximum."""
    panels = page.evaluate(
        """Array.from(document.querySelectorAll('svg.panel')).map(p =>
             [+p.dataset.top, +p.dataset.bottom,
              Array.from(p.querySelectorAll('path.curve')).map(c => c.getAttribute('d'))])"""
    )
    assert panels
    for top, bottom, paths in panels:
        assert len(paths) == 2
        for d in paths:
            ys = _points(d)[:, 1]
            # min at 5/110 above the bottom, max 5/110 below the top: 100/110 of the height
            assert ys.max() - ys.min() == pytest.approx((bottom - top) / 1.1, abs=0.02)


def _table(page, css: str) -> tuple[list[str], list[list[str]]]:
    return page.evaluate(
        f"""[Array.from(document.querySelectorAll('table.{css} th')).map(c => c.textContent),
             Array.from(document.querySelectorAll('table.{css} tbody tr')).map(r =>
               Array.from(r.cells).map(c => c.textContent))]"""
    )


def _cell(x: float | None) -> float:
    return math.nan if x in ("–", None) else float(x)


def test_tables_hold_the_json_numbers(page, run):
    _, doc = run
    head, rows = _table(page, "summary")
    assert head == ["video", "goal", "α", "frames", "mean", "min", "max", "argmax frame"]
    summary = [s for v in doc["videos"] for s in v["summary"]]
    assert len(rows) == len(summary) == len(VIDEOS) * 2 * len(ALPHAS)
    for row, s in zip(rows, summary, strict=True):
        assert row[0] == os.path.basename(s["video"]) and row[1] == s["goal"]
        assert float(row[2]) == s["alpha"] and int(row[3]) == s["n_frames"]
        for cell, key in zip(row[4:7], ("mean", "min", "max"), strict=True):
            assert float(cell) == pytest.approx(s[key], abs=5e-5)
        assert int(row[7]) == s["argmax_frame"]

    head, rows = _table(page, "diagnostics")
    assert head[:4] == ["video", "goal", "α", "label"]
    diags = doc["diagnostics"]
    assert len(rows) == len(diags) > 0 and {d["video"] for d in diags} >= {"ALL"}
    for row, d in zip(rows, diags, strict=True):
        assert row[0] == os.path.basename(d["video"]) and row[3] == d["label"]
        assert int(row[4]) == d["n"]
        for cell, key in zip(
            row[5:9], ("pearson", "spearman", "roc_auc", "epic_distance"), strict=True
        ):
            want = math.nan if d[key] is None else d[key]
            np.testing.assert_allclose(_cell(cell), want, atol=5e-4)


def _marker_state(page, i: int) -> dict:
    return page.evaluate(
        f"""(() => {{ const s = document.querySelectorAll('section.video')[{i}];
             return {{shown: s.dataset.shown, time: s.querySelector('video').currentTime,
               markers: Array.from(s.querySelectorAll('svg.panel')).map(p =>
                 [+p.querySelector('.marker').getAttribute('x1'), +p.dataset.left, +p.dataset.right]),
               vals: Array.from(s.querySelectorAll('td.val')).map(c => [+c.dataset.curve, c.textContent])}};
           }})()"""
    )


def test_marker_moves_to_the_frame_shown(page, run):
    _, doc = run
    for i, ((_, n, fps), video) in enumerate(zip(VIDEOS, doc["videos"], strict=True)):
        times = np.array(video["times"])
        for t in (0.05, 0.99, (n - 0.5) / fps, 0.5 * n / fps + 0.01):
            j = int(math.floor(t * fps))
            page.evaluate(f"document.querySelectorAll('video')[{i}].currentTime = {t}")
            page.wait_for_function(
                f"document.querySelectorAll('section.video')[{i}].dataset.shown === '{j}'",
                timeout=5000,
            )
            state = _marker_state(page, i)
            for x, left, right in state["markers"]:
                want = left + (times[j] - times[0]) / (times[-1] - times[0]) * (right - left)
                assert x == pytest.approx(want, abs=1e-6)
            for k, text in state["vals"]:  # the readout: every combination's reward at frame j
                assert float(text) == pytest.approx(video["curves"][k]["rewards"][j], abs=5e-5)


def test_clicking_a_curve_seeks_the_video(page, run):
    _, doc = run
    n, fps = VIDEOS[0][1], VIDEOS[0][2]
    times = doc["videos"][0]["times"]
    svg = page.locator("section.video").nth(0).locator("svg.panel").nth(1)
    box = svg.bounding_box()
    p = svg.evaluate("p => Object.assign({}, p.dataset)")
    left, right, x0, x1 = (float(p[k]) for k in ("left", "right", "x0", "x1"))
    k = 8  # click at frame 8's x (in screen pixels: the SVG is scaled to its box)
    units = left + (times[k] - x0) / (x1 - x0) * (right - left)
    svg.click(position={"x": units * box["width"] / 600, "y": box["height"] / 2})
    page.wait_for_function(
        f"document.querySelectorAll('section.video')[0].dataset.shown === '{k}'", timeout=5000
    )
    assert _marker_state(page, 0)["time"] == pytest.approx((k + 0.5) / fps, abs=1e-3)
    assert k < n


def _centroid(frame: np.ndarray) -> float:
    w = frame.astype(float).mean(axis=(0, 2))
    return float((np.arange(w.size) * w).sum() / w.sum())


def test_long_and_large_videos_are_thinned_and_downscaled(tmp_path, tiny_clip):
    from vlmrm.reward import CLIPReward
    from vlmrm.scoring.core import score_video
    from vlmrm.scoring.html_report import encode_page_video

    frames = _frames(12, size=96)
    write_video(tmp_path / "big.mp4", frames, fps=6)
    reward = CLIPReward(tiny_clip, goal="a white square", baseline="a square")
    scores = score_video(tmp_path / "big.mp4", reward, alphas=[0.0], stride=2, progress=False)
    assert list(scores.frames) == [0, 2, 4, 6, 8, 10]
    page = encode_page_video(scores, max_height=32, max_frames=4)
    assert page.picks == [0, 2, 4]  # every 2nd scored frame: source frames 0, 4, 8
    assert page.fps == pytest.approx(6 / 2 / 2)  # real speed: 1.5 page frames per second
    assert page.size == (32, 32) and page.source_size == (96, 96)
    (tmp_path / "page.webm").write_bytes(page.data)
    decoded = read_video(tmp_path / "page.webm")
    assert decoded.shape == (3, 32, 32, 3)
    for got, src in zip(decoded, frames[[0, 4, 8]], strict=True):
        small = src.reshape(32, 3, 32, 3, 3).mean(axis=(1, 3))  # 3x3 box filter
        assert np.abs(got.astype(float) - small).mean() < 12  # lossy, but the same picture
        # the square is where it was: the centroids of column brightness agree
        assert _centroid(got) == pytest.approx(_centroid(small), abs=0.5)


def test_report_setting_is_checked(capsys):
    from vlmrm.scoring.html_report import PAGE_FRAMES, PAGE_HEIGHT

    def parse(argv):
        return parse_settings(score_cli.COMMAND.settings, argv, score_cli.COMMAND.positional)

    assert parse(["a.mp4", "goal=x", "report=html"]).report == "html"
    with pytest.raises(ConfigError, match=r"report='pdf' is not one of: terminal, html"):
        parse(["a.mp4", "goal=x", "report=pdf"])
    # --help states the page's limits as the code applies them
    assert score_cli.main(["--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"at most {PAGE_HEIGHT} px tall" in help_text
    assert f"more than {PAGE_FRAMES} scored frames" in help_text


def test_a_video_that_cannot_be_read_again_keeps_its_curves(tmp_path):
    from types import SimpleNamespace

    from vlmrm.scoring.html_report import page_entry, render_page
    from vlmrm.scoring.outputs import ScoreRun
    from vlmrm.scoring.scores import VideoScores

    n = 7
    rewards = np.stack([np.linspace(0, 1, n), np.linspace(1, 0, n) ** 2]).reshape(1, 1, 2, n)
    scores = VideoScores(
        video=str(tmp_path / "gone.mp4"),
        frames=np.arange(n),
        times=np.arange(n) / 10.0,
        rewards=rewards.astype(np.float32),
        goals=["g"],
        baselines=["b"],
        alphas=[0.0, 1.0],
        fps=10.0,
    )
    entry = page_entry("gone", scores, None)
    assert entry.video is None and "does not exist" in entry.problem
    settings = SimpleNamespace(model="vlmrm-tiny", goal="g", baseline="b", alpha=[0.0, 1.0])
    text = render_page(settings, ScoreRun(summary=scores.summary()), [entry])
    assert "<video" not in text and "video not shown" in text
    paths = re.findall(r'<path class="curve"[^>]* d="([^"]*)"', text)
    assert len(paths) == 2 and all(len(_points(d)) == n for d in paths)
    # the falling curve is drawn falling: SVG y grows downwards
    assert np.all(np.diff(_points(paths[1])[:, 1]) > 0)
