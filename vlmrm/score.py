"""``python -m vlmrm.score``: score videos with a CLIP reward, before training on it.

Usage (``key=value`` overrides, OmegaConf syntax; bare arguments are video paths)::

    python -m vlmrm.score clip.mp4 goal="a humanoid robot kneeling" baseline="a humanoid robot"
    python -m vlmrm.score videos=[a.mp4,b.mp4,frames/] goal="a humanoid robot kneeling" \\
        baseline="a humanoid robot" model=ViT-B-32/openai alpha=[0,0.5,1] out=scores/ \\
        labels=labels.csv label_column=success video_out=true

Writes to ``out``: ``scores.csv`` (``video, frame, time, goal, baseline, alpha, reward``;
or everything in ``scores.json`` with ``format=json``), ``summary.csv``, one
``<video>.png`` plot per video, ``<video>.reward.mp4`` with ``video_out=true``, and
``diagnostics.csv`` when labels are given. Prints a summary table (mean / min / max /
argmax frame per video and combination) and, with labels, how well the reward tracks
them (Pearson, Spearman, ROC-AUC, EPIC distance: see :mod:`vlmrm.diagnostics`).

A video that cannot be read is reported and skipped; the others are still scored. Exit
status: 0 all scored, 1 some videos failed, 2 bad configuration.

Lists: ``goal=[g1,g2]`` scores two goals; ``goal=[[p1,p2]]`` one goal averaging two
prompts (the same for ``baseline``). Every goal × baseline × α combination is scored
from a single pass of the image tower.

On several GPUs or machines, launch it with torchrun (the same arguments)::

    torchrun --nproc-per-node=4 -m vlmrm.score videos=[...] goal=... out=scores/

Every rank loads its own CLIP (one GPU per local rank; the CPU without GPUs) and scores
its share of the videos (``videos[rank::world_size]``); rank 0 gathers the results and
alone writes the files and prints the tables, exactly those of a one-process run. Rank 0
also draws the plots and reward videos and reads ``labels``, so it must see ``out``, the
labels and (for ``video_out=true`` or ``labels=auto``) the videos.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.compiling import resolve_compile
from vlmrm.errors import ConfigError, VLMRMError

DEFAULT_MODEL = "ViT-B-32/openai"


@dataclass
class ScoreConfig:
    """Settings of ``python -m vlmrm.score`` (each is a ``key=value`` on the command line)."""

    videos: Any = None
    goal: Any = None
    baseline: Any = None
    model: str = DEFAULT_MODEL
    pretrained: str | None = None
    device: str | None = None
    precision: str = "auto"
    alpha: Any = 0.0
    stride: int = 1
    start: float | None = None
    end: float | None = None
    fps: float | None = None
    batch_size: int | None = None
    out: str = "scores"
    format: str = "csv"
    plot: bool = True
    video_out: bool = False
    labels: str | None = None
    label_column: Any = None
    progress: bool = True
    compile: Any = False


HELP = {
    "videos": "video files (mp4, webm, gif, ...) or folders of PNG frames; a list [a.mp4,b.mp4] or bare paths",
    "goal": "goal prompt; a list scores several goals; [[p1,p2]] averages prompts (required)",
    "baseline": "baseline prompt (the scene without the goal); a list sweeps several; needed for alpha > 0",
    "model": f"open_clip 'ARCH/TAG' (default {DEFAULT_MODEL}), 'ARCH' with pretrained=FILE, or vlmrm-tiny",
    "pretrained": "local weights file for a bare architecture name",
    "device": "cpu, cuda, cuda:N (default: cuda if available)",
    "precision": "auto, fp32, bf16, fp16, amp, int8 (CPU)",
    "alpha": "goal-baseline regularisation in [0, 1]; a list [0,0.5,1] costs one encoding pass",
    "stride": "score every stride-th frame",
    "start": "first time to score, seconds",
    "end": "stop before this time, seconds",
    "fps": "frame rate for PNG folders (or to override the video's)",
    "batch_size": "frames per batch (memory ~ one batch)",
    "out": "output folder",
    "format": "csv or json",
    "plot": "write <video>.png reward plots",
    "video_out": "write <video>.reward.mp4 with the reward curve beside the frames",
    "labels": "CSV of per-frame ground truth (columns: [video,] [frame,] values...); 'auto' looks for <video>.labels.csv or labels.csv beside each video",
    "label_column": "ground-truth column(s) to compare with (default: all numeric columns)",
    "progress": "show a progress bar over frames",
    "compile": "torch.compile the image tower: false, true, or a mode (reduce-overhead, max-autotune); pays on GPUs",
}

USAGE = (
    "usage: python -m vlmrm.score [VIDEO ...] key=value ...\n"
    "  e.g. python -m vlmrm.score videos=[a.mp4,b.mp4] goal='a humanoid robot kneeling' "
    "baseline='a humanoid robot' alpha=[0,0.5,1] out=scores/"
)


def _help_text(cls: type = ScoreConfig, usage: str = USAGE, helps: dict[str, str] = HELP) -> str:
    lines = [usage, "", "keys (default):"]
    for f in fields(cls):
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        lines.append(f"  {f.name:<13} {helps.get(f.name, '')} [{default!r}]")
    return "\n".join(lines)


def parse_args(argv: Sequence[str], cls: type = ScoreConfig, positional: str | None = "videos"):
    """``key=value`` overrides (OmegaConf dotlist) on top of the dataclass defaults.

    Bare arguments (no ``=``) are appended to ``positional``. Unknown keys and values of
    the wrong type raise :class:`ConfigError` with one line that names the valid keys.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    valid = [f.name for f in fields(cls)]
    dotlist: list[str] = []
    bare: list[str] = []
    for arg in argv:
        if "=" in arg and not arg.startswith("-"):
            key = arg.split("=", 1)[0].strip()
            top = key.split(".")[0]
            if top not in valid:
                close = difflib.get_close_matches(top, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown key {top!r}{hint}; valid keys: {', '.join(valid)}")
            dotlist.append(arg)
        elif arg.startswith("-"):
            raise ConfigError(
                f"unknown option {arg!r}; settings are key=value (valid keys: {', '.join(valid)}); see --help"
            )
        elif positional is None:
            raise ConfigError(
                f"unexpected argument {arg!r}; settings are key=value (valid keys: {', '.join(valid)})"
            )
        else:
            bare.append(arg)
    base = OmegaConf.structured(cls)
    try:
        override = OmegaConf.from_dotlist(dotlist)
        cfg = OmegaConf.merge(base, override)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
        msg = str(exc).splitlines()[0]
        where = f"bad value for {key!r}: " if key else "bad arguments: "
        raise ConfigError(f"{where}{msg}") from None
    data = OmegaConf.to_container(cfg, resolve=True)
    if bare and positional is not None:
        prev = data.get(positional)
        prev = [] if prev is None else ([prev] if isinstance(prev, str) else list(prev))
        data[positional] = prev + bare
    return cls(**data)


# ------------------------------------------------------------------ validation


def _text_or_list(value: Any, key: str, required: bool) -> Any:
    if value is None:
        if required:
            raise ConfigError(f"{key} is required, e.g. {key}='a humanoid robot kneeling'")
        return None
    if isinstance(value, dict):
        raise ConfigError(
            f"{key} was read as a mapping ({value!r}); quote prompts that contain ': ', e.g. {key}='...'"
        )
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for v in value:
            if isinstance(v, list):
                if not all(isinstance(x, str) for x in v):
                    raise ConfigError(f"{key} prompts must be text, got {v!r}")
            elif not isinstance(v, str):
                raise ConfigError(f"{key} prompts must be text, got {v!r}; quote it: {key}='...'")
        return value
    raise ConfigError(
        f"{key} must be text or a list of texts, got {value!r}; quote it: {key}='...'"
    )


def _video_list(value: Any) -> list[str]:
    if value is None or value == []:
        raise ConfigError(
            "no videos given; pass paths (python -m vlmrm.score a.mp4 goal=...) or videos=[a.mp4,b.mp4]"
        )
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"videos must be paths, got {value!r}")
    return list(items)


def _alpha_values(value: Any) -> list[float]:
    from vlmrm.reward import check_alpha

    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError("alpha must not be an empty list")
    return [check_alpha(a) for a in items]


def check_config(cfg: ScoreConfig) -> ScoreConfig:
    """Validate a :class:`ScoreConfig` (raising :class:`ConfigError`) and normalise its lists."""
    cfg.videos = _video_list(cfg.videos)
    cfg.goal = _text_or_list(cfg.goal, "goal", required=True)
    cfg.baseline = _text_or_list(cfg.baseline, "baseline", required=False)
    cfg.alpha = _alpha_values(cfg.alpha)
    if cfg.format not in ("csv", "json"):
        raise ConfigError(f"format must be 'csv' or 'json', got {cfg.format!r}")
    if cfg.stride < 1:
        raise ConfigError(f"stride must be >= 1, got {cfg.stride}")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.label_column is not None:
        cols = cfg.label_column if isinstance(cfg.label_column, list) else [cfg.label_column]
        cfg.label_column = [str(c) for c in cols]
    if not cfg.out:
        raise ConfigError("out must be a folder path")
    cfg.compile = resolve_compile(cfg.compile)
    return cfg


# ------------------------------------------------------------------ running


@dataclass
class ScoreRun:
    """What a scoring run produced: per-video scores, diagnostics rows, failures, files."""

    scores: list[Any] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def _goal_items(goal: Any) -> list:
    return [goal] if isinstance(goal, str) else list(goal)


def _unique_stems(videos: list[str]) -> list[str]:
    """Output file stems: the video's stem, or ``stem_ext`` / ``stem_N`` when stems collide."""
    out: list[str] = []
    for v in videos:
        p = Path(v.rstrip("/\\"))
        stem = p.stem or "video"
        if stem in out:
            stem = f"{stem}_{p.suffix.lstrip('.')}" if p.suffix else stem
        base, n = stem, 2
        while stem in out:
            stem, n = f"{base}_{n}", n + 1
        out.append(stem)
    return out


def _auto_labels(video: str) -> Path | None:
    p = Path(video.rstrip("/\\"))
    for cand in (p.with_name(p.stem + ".labels.csv"), p.parent / "labels.csv"):
        if cand.is_file():
            return cand
    return None


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    return x


def _pooled_diagnostics(pairs: list[tuple[Any, dict[str, np.ndarray]]]) -> list[dict[str, Any]]:
    """Diagnostics over all labelled videos together (frames of every video pooled)."""
    from vlmrm.diagnostics import diagnose
    from vlmrm.scoring import prompt_label

    if len(pairs) < 2:
        return []
    first = pairs[0][0]
    rows = []
    for gi, g in enumerate(first.goals):
        for bi, b in enumerate(first.baselines):
            for ai, a in enumerate(first.alphas):
                for col in pairs[0][1]:
                    r = np.concatenate([s.rewards[gi, bi, ai] for s, lab in pairs if col in lab])
                    y = np.concatenate([lab[col] for s, lab in pairs if col in lab])
                    d = diagnose(r, y, label=col)
                    rows.append(
                        {
                            "video": "ALL",
                            "goal": prompt_label(g),
                            "baseline": prompt_label(b),
                            "alpha": a,
                            **d.as_dict(),
                        }
                    )
    return rows


@dataclass
class _Scored:
    """One video's outcome on the rank that scored it (pickled to rank 0 under torchrun)."""

    video: str
    stem: str
    scores: Any = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Setup:
    """What every rank needs to score: the checked config, the reward and the sweep."""

    cfg: ScoreConfig
    reward: Any
    goals: list
    baselines: list
    alphas: list[float]
    out: Path
    label_table: Any = None


def _current_info() -> Any:
    """The job's :class:`~vlmrm.distributed.DistInfo`: rank 0 of 1 unless a process group is up."""
    import torch.distributed as dist

    from vlmrm.distributed import DistInfo, init_distributed

    if dist.is_available() and dist.is_initialized():
        return init_distributed()
    return DistInfo()


def _setup(cfg: ScoreConfig, info: Any) -> _Setup:
    import vlmrm
    from vlmrm.diagnostics import load_labels
    from vlmrm.distributed import rank_device
    from vlmrm.scoring import _alpha_list, _prompt_list, _targets

    cfg = check_config(cfg)
    label_table = None
    if info.is_main and cfg.labels is not None and cfg.labels != "auto":
        label_table = load_labels(cfg.labels, cfg.label_column)
    goals = _prompt_list(cfg.goal, "goal")
    baselines = [None] if cfg.baseline is None else _prompt_list(cfg.baseline, "baseline")
    alphas = _alpha_list(cfg.alpha, 0.0)
    clip = vlmrm.load_clip(
        cfg.model,
        device=rank_device(cfg.device, info),
        precision=cfg.precision,
        pretrained=cfg.pretrained,
        compile=cfg.compile or False,
    )
    first_goal = goals[0] if isinstance(goals[0], str) else list(goals[0])
    first_base = (
        None
        if baselines[0] is None
        else (baselines[0] if isinstance(baselines[0], str) else list(baselines[0]))
    )
    reward = vlmrm.CLIPReward(
        clip, goal=first_goal, baseline=first_base, alpha=0.0, batch_size=cfg.batch_size
    )
    _targets(reward, goals, baselines, alphas)  # fail now, not once per video

    out = Path(cfg.out)
    if info.is_main:  # only rank 0 writes
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the output folder {cfg.out!r}: {exc.strerror or exc}"
            ) from None
    return _Setup(
        cfg=cfg,
        reward=reward,
        goals=[g if isinstance(g, str) else list(g) for g in goals],
        baselines=[
            None if b is None else (b if isinstance(b, str) else list(b)) for b in baselines
        ],
        alphas=alphas,
        out=out,
        label_table=label_table,
    )


def _agree(problem: str | None, info: Any) -> str | None:
    """Every rank learns whether any rank failed to set up (so none waits for the others forever)."""
    if not info.enabled:
        return problem
    import torch.distributed as dist

    problems: list[str | None] = [None] * info.world_size
    dist.all_gather_object(problems, problem)
    found = [(r, p) for r, p in enumerate(problems) if p is not None]
    if not found:
        return None
    if len(found) == info.world_size and len({p for _, p in found}) == 1:
        return found[0][1]
    return "; ".join(f"rank {r}: {p}" for r, p in found)


def _progress_option(progress: bool, info: Any) -> Any:
    """Under torchrun every rank shows its own bar, prefixed with its rank, on its own line."""
    if not progress or not info.enabled:
        return progress
    return {"prefix": f"[rank {info.rank}/{info.world_size}] ", "position": info.local_rank}


def _score_one(video: str, stem: str, s: _Setup, progress: Any) -> _Scored:
    """Score one video; a failure is recorded (not raised) so the others go on."""
    from vlmrm.scoring import score_video

    cfg = s.cfg
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            scores = score_video(
                video,
                s.reward,
                goals=s.goals,
                baselines=s.baselines,
                alphas=s.alphas,
                stride=cfg.stride,
                start=cfg.start,
                end=cfg.end,
                fps=cfg.fps,
                batch_size=cfg.batch_size,
                progress=progress,
            )
    except KeyboardInterrupt:
        raise
    except VLMRMError as exc:
        return _Scored(video, stem, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
        msg = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        return _Scored(video, stem, error=msg)
    return _Scored(video, stem, scores, warnings=[str(w.message) for w in caught])


class _Outputs:
    """Rank 0's half of a run: per-video messages, labels, diagnostics, CSV/JSON, plots, report.

    Fed the videos' outcomes in the original order, as they come (one process) or after
    the gather (torchrun), so both write exactly the same files and print the same tables.
    """

    def __init__(self, s: _Setup, result: ScoreRun, err: Any) -> None:
        self.s = s
        self.cfg = s.cfg
        self.result = result
        self.err = err
        self.csv_path = s.out / "scores.csv"
        self.wrote_header = False
        self.json_videos: list[dict[str, Any]] = []
        self.labelled: list[tuple[Any, dict[str, np.ndarray]]] = []

    def _print(self, text: str) -> None:
        self.err.print(text, markup=True, highlight=False, soft_wrap=True)

    def add(self, item: _Scored) -> None:
        from rich.markup import escape

        from vlmrm.diagnostics import diagnose_scores, labels_for_video, load_labels
        from vlmrm.scoring import plot_scores, write_reward_video

        cfg, result, out, video = self.cfg, self.result, self.s.out, item.video
        if item.error is not None:
            result.failures.append((video, item.error))
            self._print(f"[red]skipped[/red] {escape(video)}: {escape(item.error)}")
            return
        for w in item.warnings:  # e.g. a truncated file that decoded only partly
            self._print(f"[yellow]warning[/yellow]: {escape(w)}")
        scores = item.scores
        result.scores.append(scores)
        summary = scores.summary()
        result.summary.extend(summary)

        labels = None
        try:
            table = self.s.label_table
            if cfg.labels == "auto":
                found = _auto_labels(video)
                table = None if found is None else load_labels(found, cfg.label_column)
            if table is not None:
                labels = labels_for_video(table, video, scores.frames)
                if labels is None:
                    self._print(
                        f"[yellow]note[/yellow]: no rows for {escape(repr(video))} in the labels file"
                    )
        except ConfigError as exc:  # this video's labels are unusable; its scores are fine
            labels = None
            result.failures.append((video, f"labels: {exc}"))
            self._print(f"[yellow]labels unusable[/yellow] for {escape(video)}: {escape(str(exc))}")
        if labels is not None:
            result.diagnostics.extend(diagnose_scores(scores, labels))
            self.labelled.append((scores, labels))

        if cfg.format == "csv":
            scores.to_frame().to_csv(
                self.csv_path,
                mode="a" if self.wrote_header else "w",
                header=not self.wrote_header,
                index=False,
            )
            self.wrote_header = True
        else:
            self.json_videos.append(
                {
                    "video": scores.video,
                    "fps": scores.fps,
                    "frames": scores.frames.tolist(),
                    "times": [None if not math.isfinite(t) else t for t in scores.times.tolist()],
                    "curves": [
                        {
                            "goal": s["goal"],
                            "baseline": s["baseline"],
                            "alpha": s["alpha"],
                            "rewards": r.astype(float).tolist(),
                        }
                        for s, (_, _, _, r) in zip(summary, scores.variants(), strict=True)
                    ],
                    "summary": summary,
                    "labels": None
                    if labels is None
                    else {k: v.tolist() for k, v in labels.items()},
                }
            )
        try:
            if cfg.plot:
                result.files.append(plot_scores(scores, out / f"{item.stem}.png", labels))
            if cfg.video_out:
                result.files.append(
                    write_reward_video(scores, out / f"{item.stem}.reward.mp4", labels=labels)
                )
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the scores are written; report and go on
            result.failures.append((video, f"plot/video: {type(exc).__name__}: {exc}"))
            self._print(f"[red]could not draw[/red] {escape(video)}: {escape(str(exc))}")

    def finish(self, console: Any) -> None:
        self.result.diagnostics.extend(_pooled_diagnostics(self.labelled))
        _write_tables(
            self.cfg,
            self.s.out,
            self.result,
            self.json_videos,
            self.csv_path if self.wrote_header else None,
        )
        print_report(self.result, console, self.err)


def run(
    cfg: ScoreConfig, console: Any = None, err_console: Any = None, info: Any = None
) -> ScoreRun:
    """Score every video of a checked config, write the outputs and print the tables.

    Configuration problems raise :class:`ConfigError` before any video is read; a video
    that fails is recorded in ``ScoreRun.failures`` and the others go on.

    Under ``torchrun`` (``info``: a :class:`vlmrm.distributed.DistInfo` with several
    ranks; default: the process group already set up, if any) every rank loads its own
    CLIP on its own device and scores its :func:`~vlmrm.distributed.shard` of the
    videos; rank 0 gathers the results in the original order and alone writes the files
    and prints the tables, exactly as one process would. Ranks other than 0 return an
    empty :class:`ScoreRun`.
    """
    from rich.console import Console

    from vlmrm.distributed import gather_to_rank0, shard

    info = _current_info() if info is None else info
    console = console or Console()
    err = err_console or Console(stderr=True)
    if not info.enabled:
        s = _setup(cfg, info)
    else:  # a problem on any rank stops every rank, before anyone waits on the others
        s, problem = None, None
        try:
            s = _setup(cfg, info)
        except VLMRMError as exc:
            problem = str(exc)
        problem = _agree(problem, info)
        if problem is not None:
            raise ConfigError(problem)
    assert s is not None
    cfg = s.cfg
    result = ScoreRun()
    jobs = list(zip(cfg.videos, _unique_stems(cfg.videos), strict=True))
    progress = _progress_option(cfg.progress, info)
    if not info.enabled:  # stream: each video's rows are written as soon as it is scored
        outputs = _Outputs(s, result, err)
        for video, stem in jobs:
            outputs.add(_score_one(video, stem, s, progress))
    else:
        mine = [_score_one(video, stem, s, progress) for video, stem in shard(jobs, info)]
        merged = gather_to_rank0(mine, info)
        if not info.is_main:
            return result
        outputs = _Outputs(s, result, err)
        for item in merged or []:
            outputs.add(item)
    outputs.finish(console)
    return result


def _write_tables(
    cfg: ScoreConfig, out: Path, result: ScoreRun, json_videos: list, csv_path: Path | None
) -> None:
    import pandas as pd

    if cfg.format == "csv":
        if csv_path is not None:
            result.files.insert(0, str(csv_path))
        if result.summary:
            pd.DataFrame(result.summary).to_csv(out / "summary.csv", index=False)
            result.files.append(str(out / "summary.csv"))
        if result.diagnostics:
            pd.DataFrame(result.diagnostics).to_csv(out / "diagnostics.csv", index=False)
            result.files.append(str(out / "diagnostics.csv"))
        if result.failures:
            pd.DataFrame(result.failures, columns=["video", "error"]).to_csv(
                out / "failures.csv", index=False
            )
            result.files.append(str(out / "failures.csv"))
    else:
        doc = {
            "model": cfg.model,
            "goal": cfg.goal,
            "baseline": cfg.baseline,
            "alpha": cfg.alpha,
            "videos": json_videos,
            "diagnostics": result.diagnostics,
            "failed": [{"video": v, "error": e} for v, e in result.failures],
        }
        path = out / "scores.json"
        path.write_text(json.dumps(_json_safe(doc), indent=1))
        result.files.insert(0, str(path))


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "–" if not math.isfinite(x) else f"{x:.{digits}f}"
    return str(x)


def print_report(result: ScoreRun, console: Any, err: Any) -> None:
    """Rich tables: reward summary per video/combination, diagnostics, failures, files."""
    from rich.table import Table
    from rich.text import Text

    from vlmrm.scoring import _short

    if result.summary:
        multi_goal = len({r["goal"] for r in result.summary}) > 1
        multi_base = len({r["baseline"] for r in result.summary}) > 1
        t = Table(title="CLIP reward per video", title_justify="left")
        t.add_column("video", overflow="fold")
        if multi_goal:
            t.add_column("goal", overflow="fold")
        if multi_base:
            t.add_column("baseline", overflow="fold")
        for name in ("α", "frames", "mean", "min", "max", "argmax frame"):
            t.add_column(name, justify="right")
        for r in result.summary:
            cells = [os.path.basename(r["video"].rstrip("/")) or r["video"]]
            if multi_goal:
                cells.append(_short(r["goal"], 40))
            if multi_base:
                cells.append(_short(r["baseline"], 30))
            cells += [
                f"{r['alpha']:g}",
                str(r["n_frames"]),
                _fmt(r["mean"]),
                _fmt(r["min"]),
                _fmt(r["max"]),
                str(r["argmax_frame"]),
            ]
            t.add_row(*(Text(c) for c in cells))  # Text: no markup parsing of paths/prompts
        console.print(t)
    if result.diagnostics:
        diags = result.diagnostics
        multi_goal = len({d["goal"] for d in diags}) > 1
        multi_base = len({d["baseline"] for d in diags}) > 1
        any_note = any(d["note"] for d in diags)
        t = Table(
            title="Does the reward track the ground truth?",
            title_justify="left",
            caption="ROC-AUC: 0.5 = chance; EPIC distance: 0 = same up to affine map, 0.71 = unrelated",
        )
        t.add_column("video", overflow="fold")
        if multi_goal:
            t.add_column("goal", overflow="fold")
        if multi_base:
            t.add_column("baseline", overflow="fold")
        t.add_column("α", justify="right", no_wrap=True)
        t.add_column("label", no_wrap=True)
        for name in ("n", "pearson", "spearman", "ROC-AUC", "EPIC"):
            t.add_column(name, justify="right", no_wrap=True)
        if any_note:
            t.add_column("note", overflow="fold")
        for d in diags:
            cells = [os.path.basename(d["video"].rstrip("/")) or d["video"]]
            if multi_goal:
                cells.append(_short(d["goal"], 30))
            if multi_base:
                cells.append(_short(d["baseline"], 24))
            cells += [
                f"{d['alpha']:g}",
                d["label"],
                str(d["n"]),
                _fmt(d["pearson"], 3),
                _fmt(d["spearman"], 3),
                _fmt(d["roc_auc"], 3),
                _fmt(d["epic_distance"], 3),
            ]
            if any_note:
                cells.append(d["note"])
            t.add_row(*(Text(c) for c in cells))  # Text: no markup parsing of paths/prompts
        console.print(t)
    if result.files:
        console.print(
            "wrote: " + ", ".join(result.files), highlight=False, markup=False, soft_wrap=True
        )
    if result.failures:
        n_bad = len({v for v, _ in result.failures})
        err.print(f"[red]{n_bad} video(s) had problems:[/red]", markup=True)
        for v, e in result.failures:
            err.print(f"  {v}: {e}", highlight=False, markup=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vlmrm.score`` / ``vlmrm score``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    if any(a in ("-h", "--help", "help") for a in argv):
        if main_rank:
            print(_help_text())
        return 0
    try:
        cfg = parse_args(argv)
        from vlmrm.distributed import distributed_session

        # gloo: only pickled results travel between ranks; the GPUs only run CLIP.
        # The session always leaves the process group, also on Ctrl-C.
        with distributed_session(backend="gloo") as info:
            result = run(cfg, info=info)
    except VLMRMError as exc:
        if main_rank:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the process group is already left; no traceback
        if main_rank:
            print("interrupted", file=sys.stderr)
        return 130
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
