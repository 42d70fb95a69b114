"""``report=html``: one self-contained page to look at a scoring run.

Reading a reward off a PNG next to a video player is slow; the page puts each video
beside its reward curves and moves a marker along the curves as the video plays (click a
curve to jump there), with the summary and diagnostics tables of the terminal report
below. Everything is inside the one file, so it opens offline, from an e-mail or a CI
artifact: the videos are re-encoded as VP9 WebM (which Chromium and Firefox play) and
embedded as ``data:`` URIs, the curves are inline SVG, the marker is a few lines of
inline JavaScript. Nothing is fetched from the network.

Page size stays sane: the page copy of a video is at most :data:`PAGE_HEIGHT` pixels
tall, and a video of more than :data:`PAGE_FRAMES` scored frames keeps every k-th of them
(played at the real speed; the curves keep every frame). The page is written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write_text
from vlmrm.scoring.plots import curve_label
from vlmrm.scoring.report import TableSpec, diagnostics_spec, summary_spec
from vlmrm.scoring.scores import ScoreRun, VideoScores, base_name, json_safe, prompt_label

#: Largest height (pixels) of a video's copy in the page; taller videos are downscaled.
PAGE_HEIGHT = 240
#: Most frames of a video's copy in the page; longer videos keep every k-th scored frame.
PAGE_FRAMES = 900
#: VP9 at constant quality, encoded fast (the page is for looking, not archiving).
_VP9 = ["-deadline", "realtime", "-cpu-used", "8", "-crf", "36", "-b:v", "0"]
#: matplotlib's tab10, so the page's curves have the colours of the PNG plots.
COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_TRUTH_DASH = ("6 3", "2 3", "8 3 2 3")

# the panel's geometry in SVG user units: plot area [LEFT, WIDTH-RIGHT] x [TOP, HEIGHT-BOTTOM]
WIDTH, HEIGHT = 600, 180
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 10, 38


@dataclass
class PageVideo:
    """A video's copy for the page: WebM bytes, its frame rate and which scored frames it shows.

    ``picks[j]`` is the position (in ``VideoScores.frames``) of the page video's frame ``j``.
    """

    data: bytes
    fps: float
    picks: list[int]
    size: tuple[int, int]
    source_size: tuple[int, int]


@dataclass
class PageEntry:
    """One scored video on the page: its scores, ground truth and (if it could be read) video."""

    stem: str
    scores: VideoScores
    labels: dict[str, np.ndarray] | None = None
    video: PageVideo | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def _downscale(frame: np.ndarray, max_height: int) -> np.ndarray:
    """Shrink ``frame`` (area filter) to at most ``max_height`` rows, even sizes for the encoder."""
    from PIL import Image

    h, w = frame.shape[:2]
    if h <= max_height:
        return frame
    width = max(2, int(round(w * max_height / h / 2)) * 2)
    height = max(2, max_height // 2 * 2)
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BOX))


def encode_page_video(
    scores: VideoScores, *, max_height: int = PAGE_HEIGHT, max_frames: int = PAGE_FRAMES
) -> PageVideo:
    """Re-read the scored frames of ``scores.video`` and encode the page copy (VP9 WebM).

    The frames are read with the selection they were scored with (stride, start, end),
    checked against the scored frame indices, downscaled to ``max_height`` and thinned to
    at most ``max_frames``; the copy plays at the real speed.
    """
    from vlmrm.video import VideoWriter, iter_frames

    n = len(scores)
    k = max(1, math.ceil(n / max(1, int(max_frames))))
    sel = dict(scores.selection)
    stride = max(1, int(sel.get("stride") or 1))
    fps = (scores.fps or 30.0) / (stride * k)
    pos = 0
    with tempfile.TemporaryDirectory(prefix="vlmrm-page-") as tmp:
        path = Path(tmp) / "page.webm"
        with VideoWriter(path, fps=fps, quality=None, codec="libvpx-vp9", output_params=_VP9) as w:
            for idx, frame in iter_frames(scores.video, **sel):
                if pos >= n:
                    break
                if idx != int(scores.frames[pos]):
                    raise ConfigError(
                        f"{scores.video!r} changed since it was scored (frame {idx} vs {scores.frames[pos]})"
                    )
                if pos % k == 0:
                    small = _downscale(frame, max_height)
                    w.write(small)
                    size = (small.shape[1], small.shape[0])
                    source_size = (frame.shape[1], frame.shape[0])
                pos += 1
        if pos < n:
            raise ConfigError(f"{scores.video!r} has fewer frames than when it was scored")
        data = path.read_bytes()
    return PageVideo(data, fps, list(range(0, n, k)), size, source_size)


def page_entry(stem: str, scores: VideoScores, labels: dict[str, np.ndarray] | None) -> PageEntry:
    """A video's entry; a video that cannot be re-read keeps its curves and says why it is missing."""
    entry = PageEntry(stem, scores, labels)
    try:
        entry.video = encode_page_video(scores)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the curves are still worth showing
        entry.problem = f"{type(exc).__name__}: {exc}"
        return entry
    v = entry.video
    if v.size != v.source_size:
        entry.notes.append(
            f"shown at {v.size[0]}×{v.size[1]} (the video is {v.source_size[0]}×{v.source_size[1]})"
        )
    if len(v.picks) < len(scores):
        entry.notes.append(f"the page plays every {v.picks[1] - v.picks[0]}-th scored frame")
    return entry


def _num(x: float) -> str:
    return f"{x:.2f}"


def _tick(x: float, span: float) -> str:
    """A tick label with the decimals that tell ticks ``span`` apart (2 more than its magnitude)."""
    digits = 0 if span <= 0 else max(0, 2 - math.floor(math.log10(span)))
    return f"{x:.{min(digits, 8)}f}"


def _path(px: np.ndarray, py: np.ndarray) -> str:
    """An SVG path through the points, broken where a value is not finite."""
    parts, pen_down = [], False
    for x, y in zip(px, py, strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{_num(x)} {_num(y)}")
        pen_down = True
    return " ".join(parts)


def _range(values: list[np.ndarray]) -> tuple[float, float]:
    """The y range of a panel: the finite values, padded by 5 %, never empty."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo or max(abs(hi), 1.0) * 1e-3
    return lo - 0.05 * span, hi + 0.05 * span


def _x_values(scores: VideoScores) -> tuple[np.ndarray, str]:
    """The curves' x: time (s) when the video has a frame rate, else the frame index."""
    if scores.fps is not None and np.isfinite(scores.times).all():
        return scores.times.astype(np.float64), "time (s)"
    return scores.frames.astype(np.float64), "frame"


#: Width of one character of an 11 px tick label, in SVG units (digits of the common sans
#: fonts are 0.55-0.64 em): enough room is kept left of the plot for the widest label.
_CHAR = 7.2
#: The rotated y-axis title is centred on this x; tick labels end left of the plot at
#: ``left - 4`` and must start right of ``_TITLE_X + 10``.
_TITLE_X = 14


def _panel(entry: PageEntry, ai: int, xs: np.ndarray, x_label: str) -> str:
    """The SVG of α number ``ai``: one path per goal/baseline, ground truth dashed, the marker.

    With one curve the y axis is that curve's reward. With several (goals, baselines), each
    curve is drawn on its own scale, its minimum at the bottom and maximum at the top: goals
    differ in their level far more than a frame's reward moves, so on one shared scale every
    curve looked flat. The axis then reads "each curve from its min to its max"; each curve's
    range is in its tooltip and beside it in the readout, which gives the true values.
    """
    s = entry.scores
    x0, x1 = float(xs[0]), float(xs[-1])
    if x1 <= x0:
        x1 = x0 + 1.0
    curves = [
        s.rewards[gi, bi, ai].astype(np.float64)
        for gi in range(len(s.goals))
        for bi in range(len(s.baselines))
    ]
    own_scale = len(curves) > 1
    y0, y1 = (-0.05, 1.05) if own_scale else _range(curves)
    ranges = [_range([c]) if own_scale else (y0, y1) for c in curves]
    ticks = [(y0 + f * (y1 - y0), f"{round(100 * f)}%" if own_scale else _tick(y0 + f * (y1 - y0), y1 - y0))
             for f in ((0.05 / 1.1, 0.5, 1.05 / 1.1) if own_scale else (0.0, 0.5, 1.0))]
    left = max(LEFT, math.ceil(_TITLE_X + 14 + _CHAR * max(len(t) for _, t in ticks)))
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM

    def px(x: Any) -> Any:
        return left + (np.asarray(x, np.float64) - x0) / (x1 - x0) * (right - left)

    def py(y: Any, lo: float = y0, hi: float = y1) -> Any:
        return TOP + (hi - np.asarray(y, np.float64)) / (hi - lo) * (bottom - TOP)

    a = s.alphas[ai]
    out = [
        f'<svg class="panel" data-alpha="{a:g}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'data-x0="{x0!r}" data-x1="{x1!r}" data-y0="{y0!r}" data-y1="{y1!r}" '
        f'data-left="{left}" data-right="{right}" data-top="{TOP}" data-bottom="{bottom}" '
        f'data-scale="{"own" if own_scale else "shared"}">',
        f'<rect class="frame" x="{left}" y="{TOP}" width="{right - left}" height="{bottom - TOP}"/>',
    ]
    for y, text in ticks:  # y ticks at the bottom, middle and top of the range
        yy = _num(py(y))
        out.append(f'<line class="grid" x1="{left}" x2="{right}" y1="{yy}" y2="{yy}"/>')
        out.append(f'<text class="tick" x="{left - 4}" y="{yy}" text-anchor="end">{text}</text>')
    for frac in np.linspace(0.0, 1.0, 5):
        x = x0 + frac * (x1 - x0)
        out.append(
            f'<text class="tick" x="{_num(px(x))}" y="{bottom + 14}" text-anchor="middle">{_tick(x, x1 - x0)}</text>'
        )
    mid_x, mid_y = (left + right) / 2, (TOP + bottom) / 2
    out.append(
        f'<text class="axis" x="{mid_x}" y="{bottom + 31}" text-anchor="middle">{x_label}</text>'
    )
    title = f"α = {a:g}, each curve min–max" if own_scale else f"reward, α = {a:g}"
    out.append(
        f'<text class="axis" x="{_TITLE_X}" y="{mid_y}" text-anchor="middle" '
        f'transform="rotate(-90 {_TITLE_X} {mid_y})">{title}</text>'
    )
    k = 0
    for gi, g in enumerate(s.goals):
        for bi, b in enumerate(s.baselines):
            r = s.rewards[gi, bi, ai]
            lo, hi = ranges[k]
            label = html.escape(curve_label(s, g, b))
            span = f", from {_tick(lo, hi - lo)} to {_tick(hi, hi - lo)}" if own_scale else ""
            out.append(
                f'<path class="curve" data-goal="{gi}" data-baseline="{bi}" stroke="{COLORS[k % 10]}" '
                f'data-y0="{lo!r}" data-y1="{hi!r}" '
                f'd="{_path(px(xs), py(r, lo, hi))}"><title>{label}, α = {a:g}{span}</title></path>'
            )
            k += 1
    for (col, y), dash in zip(list((entry.labels or {}).items())[:3], _TRUTH_DASH, strict=False):
        lo, hi = _range([np.asarray(y, np.float64)])
        out.append(
            f'<path class="truth" stroke-dasharray="{dash}" d="{_path(px(xs), py(y, lo, hi))}">'
            f"<title>ground truth: {html.escape(str(col))} (own scale)</title></path>"
        )
    out.append(f'<line class="marker" x1="{left}" x2="{left}" y1="{TOP}" y2="{bottom}"/>')
    out.append("</svg>")
    return "\n".join(out)


def _readout(entry: PageEntry) -> str:
    """The legend: one row per goal/baseline (its colour), one column per α, values at the marker."""
    s = entry.scores
    head = "".join(f"<th>α = {a:g}</th>" for a in s.alphas)
    rows, k = [], 0
    for gi, g in enumerate(s.goals):
        for bi, b in enumerate(s.baselines):
            cells = "".join(
                f'<td class="val" data-curve="{(gi * len(s.baselines) + bi) * len(s.alphas) + ai}">–</td>'
                for ai in range(len(s.alphas))
            )
            swatch = f'<span class="swatch" style="background:{COLORS[k % 10]}"></span>'
            rows.append(f"<tr><td>{swatch}{html.escape(curve_label(s, g, b))}</td>{cells}</tr>")
            k += 1
    truth = "".join(
        f'<div class="truthkey">┅ ground truth: {html.escape(str(c))} (own scale)</div>'
        for c in list((entry.labels or {}).keys())[:3]
    )
    return f'<table class="readout"><tr><th>reward at the marker</th>{head}</tr>{"".join(rows)}</table>{truth}'


def _script_json(obj: Any) -> str:
    """JSON safe to put inside a ``<script>`` element (no ``</script>`` can end it early)."""
    return json.dumps(json_safe(obj)).replace("<", "\\u003c")


def _section(i: int, entry: PageEntry) -> str:
    s = entry.scores
    xs, x_label = _x_values(s)
    v = entry.video
    picks = v.picks if v is not None else list(range(len(s)))
    data = {
        "fps": v.fps if v is not None else None,
        "x": xs[picks].tolist(),
        "frame": s.frames[picks].tolist(),
        "time": s.times[picks].tolist(),
        "values": [r[picks].astype(np.float64).tolist() for _, _, _, r in s.variants()],
    }
    if v is not None:
        uri = "data:video/webm;base64," + base64.b64encode(v.data).decode("ascii")
        # small videos are shown PAGE_HEIGHT tall; the browser's own controls would be drawn
        # over the bottom of the frame (40% of a small one), so the page's sit below it
        zoom = max(1.0, PAGE_HEIGHT / v.size[1])
        media = (
            f'<video id="video-{i}" muted playsinline preload="auto" '
            f'width="{round(v.size[0] * zoom)}" height="{round(v.size[1] * zoom)}" '
            f'data-fps="{v.fps!r}" src="{uri}"></video>'
            f'<div class="controls"><button type="button" class="play">play</button>'
            f'<input type="range" class="seek" min="0" max="{len(picks) - 1}" step="1" value="0" '
            f'aria-label="frame"></div>'
        )
    else:
        media = f'<div class="novideo">video not shown: {html.escape(entry.problem or "")}</div>'
    fps = "no frame rate" if s.fps is None else f"{s.fps:g} fps"
    facts = [f"{len(s)} scored frames", fps] + entry.notes
    panels = "\n".join(_panel(entry, ai, xs, x_label) for ai in range(len(s.alphas)))
    return f"""<section class="video" id="v{i}" data-video="{html.escape(s.video)}">
<h2>{html.escape(base_name(s.video))}</h2>
<p class="facts">{html.escape(" · ".join(facts))} · <span class="where">frame –</span></p>
<div class="row"><div class="media">{media}</div>
<div class="curves">{_readout(entry)}
{panels}</div></div>
<script type="application/json" class="vdata">{_script_json(data)}</script>
</section>"""


def table_html(spec: TableSpec, css_class: str) -> str:
    """A :class:`TableSpec` as an HTML table (the terminal report's cells, full prompts)."""
    head = "".join(
        f'<th class="{"num" if c.numeric else "text"}">{html.escape(c.name)}</th>'
        for c in spec.columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if c.numeric else "text"}">{html.escape(cell)}</td>'
            for c, cell in zip(spec.columns, row, strict=True)
        )
        + "</tr>"
        for row in spec.rows
    )
    caption = f'<p class="caption">{html.escape(spec.caption)}</p>' if spec.caption else ""
    return (
        f'<h2>{html.escape(spec.title)}</h2><table class="{css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>{caption}"
    )


def _prompts(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return "; ".join(prompt_label(tuple(v)) if isinstance(v, list) else str(v) for v in value)


def render_page(settings: Any, result: ScoreRun, entries: list[PageEntry]) -> str:
    """The whole page: settings, one section per scored video, the tables, the failures."""
    alphas = settings.alpha if isinstance(settings.alpha, list) else [settings.alpha]
    head = (
        f"<p>model <code>{html.escape(str(settings.model))}</code> · goal: {html.escape(_prompts(settings.goal))}"
        f" · baseline: {html.escape(_prompts(settings.baseline))} · α: "
        f"{html.escape(', '.join(f'{float(a):g}' for a in alphas))}</p>"
    )
    parts = [head]
    parts += [_section(i, e) for i, e in enumerate(entries)]
    if result.summary:
        parts.append(table_html(summary_spec(result.summary, widths=None), "summary"))
    if result.diagnostics:
        parts.append(table_html(diagnostics_spec(result.diagnostics, widths=None), "diagnostics"))
    if result.failures:
        items = "".join(
            f"<li><code>{html.escape(v)}</code>: {html.escape(e)}</li>" for v, e in result.failures
        )
        parts.append(f'<h2>Problems</h2><ul class="failures">{items}</ul>')
    body = "\n".join(parts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CLIP reward report</title>
<style>{_CSS}</style></head>
<body><h1>CLIP reward report</h1>
{body}
<script>{_JS}</script>
</body></html>
"""


def write_html_report(
    path: str | Path, settings: Any, result: ScoreRun, entries: list[PageEntry]
) -> str:
    """Write the page atomically to ``path``; return the path."""
    atomic_write_text(path, render_page(settings, result, entries))
    return str(path)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin:1.2em 0 .3em}
section.video{border-top:1px solid #ccc;padding-top:.5em}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.media video{max-width:100%;background:#000;display:block}
.controls{display:flex;gap:.5em;align-items:center;margin-top:.3em}
.controls .seek{flex:1}
.novideo{padding:1em;background:#fee;max-width:24em}
.curves{flex:1;min-width:320px;max-width:620px}
svg.panel{width:100%;height:auto;display:block;cursor:crosshair}
svg.panel .frame{fill:none;stroke:#999}
svg.panel .grid{stroke:#eee}
svg.panel .tick,svg.panel .axis{font-size:11px;fill:#555;dominant-baseline:middle}
svg.panel path{fill:none;stroke-width:1.6}
svg.panel path.truth{stroke:#555;stroke-width:1.2}
svg.panel .marker{stroke:rgb(220,30,30);stroke-width:2}
table{border-collapse:collapse;margin:.3em 0}
th,td{padding:2px 8px;border-bottom:1px solid #ddd}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.readout td.val{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:middle}
.caption,.facts,.truthkey{color:#666;font-size:.9em}
"""

# The marker: the page video's frame j (t * fps) shows the scored frame data.frame[j], at
# curve position data.x[j]; clicking a panel seeks to the nearest page frame.
_JS = """
(function () {
  function setup(sec) {
    var data = JSON.parse(sec.querySelector("script.vdata").textContent);
    var video = sec.querySelector("video");
    var panels = Array.prototype.slice.call(sec.querySelectorAll("svg.panel"));
    var vals = Array.prototype.slice.call(sec.querySelectorAll("td.val"));
    var where = sec.querySelector(".where");
    var play = sec.querySelector("button.play"), seek = sec.querySelector("input.seek");
    var n = data.x.length, shown = -1;
    function px(svg, x) {
      var d = svg.dataset;
      return +d.left + (x - +d.x0) / (+d.x1 - +d.x0) * (+d.right - +d.left);
    }
    function show(j) {
      j = Math.max(0, Math.min(n - 1, j));
      if (j === shown) return;
      shown = j;
      panels.forEach(function (svg) {
        var m = svg.querySelector(".marker"), p = px(svg, data.x[j]);
        m.setAttribute("x1", p); m.setAttribute("x2", p);
      });
      vals.forEach(function (el) {
        var v = data.values[+el.dataset.curve][j];
        el.textContent = v === null ? "–" : v.toFixed(4);
      });
      var t = data.time[j];
      where.textContent = "frame " + data.frame[j] + (t === null ? "" : " · " + t.toFixed(2) + " s");
      sec.dataset.shown = j;
      if (seek) seek.value = j;
    }
    function seekTo(j) { if (video) video.currentTime = (j + 0.5) / data.fps; else show(j); }
    function update() { show(Math.floor(video.currentTime * data.fps + 1e-3)); }
    if (video) {
      play.addEventListener("click", function () { if (video.paused) video.play(); else video.pause(); });
      video.addEventListener("pause", function () { play.textContent = "play"; });
      video.addEventListener("playing", function () { play.textContent = "pause"; });
      seek.addEventListener("input", function () { video.pause(); seekTo(+seek.value); });
      video.addEventListener("timeupdate", update);
      video.addEventListener("seeked", update);
      video.addEventListener("play", function loop() {
        update();
        if (!video.paused && !video.ended) requestAnimationFrame(loop);
      });
    }
    panels.forEach(function (svg) {
      svg.addEventListener("click", function (ev) {
        var box = svg.getBoundingClientRect(), d = svg.dataset;
        var ux = (ev.clientX - box.left) * svg.viewBox.baseVal.width / box.width;
        var x = +d.x0 + (ux - +d.left) / (+d.right - +d.left) * (+d.x1 - +d.x0), best = 0;
        for (var j = 1; j < n; j++) if (Math.abs(data.x[j] - x) < Math.abs(data.x[best] - x)) best = j;
        seekTo(best);
      });
    });
    show(0);
  }
  document.querySelectorAll("section.video").forEach(setup);
})();
"""
