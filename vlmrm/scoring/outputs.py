"""The files of a scoring run: scores (CSV or JSON), summary, diagnostics, failures, pictures.

Rank 0 alone (or the one process) feeds :class:`Outputs` each video's outcome in the
videos' order, so a one-process run and a torchrun job write the same files. Every file
is published through :mod:`vlmrm.runtime.atomic`: ``scores.csv`` grows in its temporary
file while videos are scored and appears under its name only when the run finishes, so a
killed run never leaves a table that looks complete but is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.atomic import atomic_write, atomic_write_text, temporary_path
from vlmrm.scoring.scores import ScoreRun, json_safe


@dataclass
class Scored:
    """One video's outcome on the rank that scored it (pickled to rank 0 under torchrun)."""

    video: str
    stem: str
    scores: Any = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def unique_stems(videos: list[str]) -> list[str]:
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


def auto_labels(video: str) -> Path | None:
    """``labels=auto``: ``<video>.labels.csv`` beside the video, else ``labels.csv`` there."""
    p = Path(video.rstrip("/\\"))
    for cand in (p.with_name(p.stem + ".labels.csv"), p.parent / "labels.csv"):
        if cand.is_file():
            return cand
    return None


def pooled_diagnostics(pairs: list[tuple[Any, dict[str, np.ndarray]]]) -> list[dict[str, Any]]:
    """Diagnostics over all labelled videos together (frames of every video pooled)."""
    from vlmrm.diagnostics import diagnose
    from vlmrm.scoring.scores import prompt_label

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
                    row = {
                        "video": "ALL",
                        "goal": prompt_label(g),
                        "baseline": prompt_label(b),
                        "alpha": a,
                    }
                    rows.append({**row, **d.as_dict()})
    return rows


def _json_video(
    scores: Any, summary: list[dict[str, Any]], labels: dict[str, np.ndarray] | None
) -> dict:
    """One video's entry of ``scores.json``: frames, times, one curve per combination."""
    return {
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
        "labels": None if labels is None else {k: v.tolist() for k, v in labels.items()},
    }


def _write_csv(path: Path, rows: Any, columns: list[str] | None = None) -> str:
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=columns)
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return str(path)


class Outputs:
    """Rank 0's half of a run: per-video messages, labels, diagnostics, CSV/JSON, plots, report.

    Fed the videos' outcomes in the original order, as they come (one process) or after
    the gather (torchrun), so both write exactly the same files and print the same tables.
    """

    def __init__(
        self, settings: Any, out: Path, label_table: Any, result: ScoreRun, err: Any
    ) -> None:
        self.settings = settings
        self.out = out
        self.label_table = label_table
        self.result = result
        self.err = err
        self.csv_path = out / "scores.csv"
        self.csv_rows = 0
        self.json_videos: list[dict[str, Any]] = []
        self.labelled: list[tuple[Any, dict[str, np.ndarray]]] = []
        self.pages: list[Any] = []  # report=html: each video's entry on the page

    def _print(self, text: str) -> None:
        self.err.print(text, markup=True, highlight=False, soft_wrap=True)

    def add(self, item: Scored) -> None:
        """Record one video's outcome: its failure, or its rows, diagnostics and pictures."""
        from rich.markup import escape

        from vlmrm.diagnostics import diagnose_scores

        if item.error is not None:
            self.result.failures.append((item.video, item.error))
            self._print(f"[red]skipped[/red] {escape(item.video)}: {escape(item.error)}")
            return
        for w in item.warnings:  # e.g. a truncated file that decoded only partly
            self._print(f"[yellow]warning[/yellow]: {escape(w)}")
        scores = item.scores
        self.result.scores.append(scores)
        summary = scores.summary()
        self.result.summary.extend(summary)
        labels = self._labels(item.video, scores)
        if labels is not None:
            self.result.diagnostics.extend(diagnose_scores(scores, labels))
            self.labelled.append((scores, labels))
        if self.settings.format == "csv":
            self._append_csv(scores)
        else:
            self.json_videos.append(_json_video(scores, summary, labels))
        self._draw(item, labels)
        if self.settings.report == "html":
            self._page(item, labels)

    def _labels(self, video: str, scores: Any) -> dict[str, np.ndarray] | None:
        """This video's ground truth, if any; unusable labels are a failure, not a crash."""
        from rich.markup import escape

        from vlmrm.diagnostics import labels_for_video, load_labels

        try:
            table = self.label_table
            if self.settings.labels == "auto":
                found = auto_labels(video)
                table = None if found is None else load_labels(found, self.settings.label_column)
            if table is None:
                return None
            labels = labels_for_video(table, video, scores.frames)
            if labels is None:
                self._print(
                    f"[yellow]note[/yellow]: no rows for {escape(repr(video))} in the labels file"
                )
            return labels
        except ConfigError as exc:  # this video's labels are unusable; its scores are fine
            self.result.failures.append((video, f"labels: {exc}"))
            self._print(f"[yellow]labels unusable[/yellow] for {escape(video)}: {escape(str(exc))}")
            return None

    def _append_csv(self, scores: Any) -> None:
        """Stream the rows into ``scores.csv``'s temporary file; :meth:`finish` publishes it."""
        first = self.csv_rows == 0
        scores.to_frame().to_csv(
            temporary_path(self.csv_path), mode="w" if first else "a", header=first, index=False
        )
        self.csv_rows += len(scores)

    def _draw(self, item: Scored, labels: dict[str, np.ndarray] | None) -> None:
        from rich.markup import escape

        from vlmrm.scoring.plots import plot_scores, write_reward_video

        try:
            if self.settings.plot:
                self.result.files.append(
                    plot_scores(item.scores, self.out / f"{item.stem}.png", labels)
                )
            if self.settings.video_out:
                path = self.out / f"{item.stem}.reward.mp4"
                self.result.files.append(write_reward_video(item.scores, path, labels=labels))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the scores are written; report and go on
            self.result.failures.append((item.video, f"plot/video: {type(exc).__name__}: {exc}"))
            self._print(f"[red]could not draw[/red] {escape(item.video)}: {escape(str(exc))}")

    def _page(self, item: Scored, labels: dict[str, np.ndarray] | None) -> None:
        """The video's entry on the HTML page; a video that cannot be re-read shows its curves only."""
        from rich.markup import escape

        from vlmrm.scoring.html_report import page_entry

        entry = page_entry(item.stem, item.scores, labels)
        if entry.problem is not None:
            self.result.failures.append((item.video, f"report video: {entry.problem}"))
            self._print(
                f"[red]could not embed[/red] {escape(item.video)} in the report: {escape(entry.problem)}"
            )
        self.pages.append(entry)

    def abort(self) -> None:
        """An interrupted run: drop the unpublished ``scores.csv``."""
        temporary_path(self.csv_path).unlink(missing_ok=True)

    def finish(self) -> None:
        """Pooled diagnostics, then publish every table of the run."""
        import json

        result, out = self.result, self.out
        result.diagnostics.extend(pooled_diagnostics(self.labelled))
        if self.settings.format == "json":
            result.files.insert(
                0,
                str(atomic_write_text(out / "scores.json", json.dumps(self._json_doc(), indent=1))),
            )
        else:
            self._publish_csv()
        if self.settings.report == "html":
            from vlmrm.scoring.html_report import write_html_report

            result.files.append(
                write_html_report(out / "report.html", self.settings, result, self.pages)
            )

    def _publish_csv(self) -> None:
        result, out = self.result, self.out
        if self.csv_rows:
            # the rows are already in the temporary file: publishing is the rename alone
            result.files.insert(0, str(atomic_write(self.csv_path, lambda tmp: None)))
        if result.summary:
            result.files.append(_write_csv(out / "summary.csv", result.summary))
        if result.diagnostics:
            result.files.append(_write_csv(out / "diagnostics.csv", result.diagnostics))
        if result.failures:
            result.files.append(
                _write_csv(out / "failures.csv", result.failures, ["video", "error"])
            )

    def _json_doc(self) -> dict[str, Any]:
        s = self.settings
        return json_safe(
            {
                "model": s.model,
                "goal": s.goal,
                "baseline": s.baseline,
                "alpha": s.alpha,
                "videos": self.json_videos,
                "diagnostics": self.result.diagnostics,
                "failed": [{"video": v, "error": e} for v, e in self.result.failures],
            }
        )
