"""Settings of ``python -m vlmrm.label`` and ``python -m vlmrm.label.agreement`` (torch-free).

Everything is checked before a frame is decoded or a model loaded, so a typo, a missing
source or a sheet folder that would be overwritten answers at once with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrm.checks import check_alphas, check_choice, check_int, check_out_dir
from vlmrm.cli.vocabulary import ClipSettings, RunSettings
from vlmrm.errors import ConfigError
from vlmrm.scoring.settings import DEFAULT_MODEL, check_prompt_value

#: How frames are drawn from each video.
SAMPLES = ("frames", "episode_end")


def check_paths(value: Any, key: str, example: str) -> list[str]:
    """At least one path, every one a non-empty string that exists."""
    if value is None or value == []:
        raise ConfigError(f"no {key} given; pass paths, e.g. {example}")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{key} must be paths, got {value!r}")
    for item in items:
        if not Path(item).exists():
            raise ConfigError(f"{item!r} does not exist; pass a training run folder, a video file or a folder of videos")
    return list(items)


def check_new_folder(out: str, overwrite: bool) -> str:
    """``out`` may be written: it does not exist, is empty, or ``overwrite`` says so.

    A sheet folder holds the CSV a person fills in by hand; replacing it by accident
    would throw that work away, so only ``overwrite=true`` does.
    """
    out = check_out_dir(out)
    path = Path(out)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ConfigError(
            f"out={out!r} already exists and may hold filled-in labels; pass overwrite=true to "
            "replace it, or another out="
        )
    return out


@dataclass
class SheetSettings(RunSettings):
    """Settings of ``python -m vlmrm.label``: which frames to draw and how to lay them out."""

    sources: Any = None
    """Training run folders (their videos/step_<N>.mp4), record folders, video files
    (mp4, webm, gif, ...), folders of videos or of runs; a list [a,b] or bare paths."""
    sample: str = "frames"
    """frames (per_video random frames of each video, seeded) or episode_end (the last
    frame of each video: one evaluation episode per video by default)."""
    per_video: int = 4
    """Frames drawn from each video with sample=frames (all of a shorter video)."""
    per_sheet: int = 16
    """Frames per sheet image (e.g. 16 or 25: a 4x4 or 5x5 grid)."""
    cell_size: int = 192
    """Size in pixels of one grid cell (frames are scaled to fit, aspect kept)."""
    out: str = "sheets"
    """Output folder: labels.csv (to fill), sheet_NNN.png, frames/, manifest.json."""
    seed: int = 0
    """Random seed of the frame draw and of the shuffle across videos."""
    overwrite: bool = False
    """Replace an existing, non-empty out folder (it may hold a filled labels.csv)."""

    def validate(self) -> None:
        self.sources = check_paths(self.sources, "sources", "python -m vlmrm.label runs/quickstart")
        self.sample = check_choice("sample", self.sample, SAMPLES)
        self.per_video = check_int("per_video", self.per_video, 1)
        self.per_sheet = check_int("per_sheet", self.per_sheet, 1)
        self.cell_size = check_int("cell_size", self.cell_size, 32)
        self.seed = check_int("seed", self.seed, 0)
        self.out = check_new_folder(self.out, bool(self.overwrite))


@dataclass
class AgreementSettings(ClipSettings):
    """Settings of ``python -m vlmrm.label.agreement``: the filled CSV and the reward to check."""

    labels: Any = None
    """The filled labels.csv of a sheet folder (or the folder itself)."""
    frames_dir: str | None = None
    """Folder the CSV's image paths are relative to (default: the CSV's folder)."""
    model: str = DEFAULT_MODEL
    """The CLIP: ARCH/TAG (an open_clip pretrained tag), ARCH with pretrained=FILE_OR_TAG,
    hf-hub:org/repo, or vlmrm-tiny."""
    goal: Any = None
    """Goal prompt (required); a list scores several goals; [[p1,p2]] averages prompts."""
    baseline: Any = None
    """Baseline prompt (the scene without the goal); needed for alpha > 0."""
    alpha: Any = 0.0
    """Goal-baseline regularisation in [0, 1]; a list [0,0.5,1] costs one encoding pass."""
    out: str | None = None
    """Output folder of agreement.json and rewards.csv (default: the CSV's folder)."""
    threads: Any = "auto"
    """CPU threads of torch: auto (half the cores) or N; printed once when the command starts."""

    def validate(self) -> None:
        labels = self.labels
        if isinstance(labels, list) and len(labels) == 1:
            labels = labels[0]
        if not isinstance(labels, str) or not labels:
            raise ConfigError(
                "labels must be one filled CSV, e.g. python -m vlmrm.label.agreement sheets/labels.csv goal=..."
            )
        path = Path(labels)
        if path.is_dir():
            path = path / "labels.csv"
        if not path.is_file():
            raise ConfigError(f"labels file {str(path)!r} does not exist; pass the labels.csv of a sheet folder")
        self.labels = str(path)
        self.check_clip()
        self.goal = check_prompt_value(self.goal, "goal", required=True)
        self.baseline = check_prompt_value(self.baseline, "baseline", required=False)
        self.alpha = check_alphas(self.alpha, has_baseline=self.baseline is not None)
        if self.frames_dir is not None and not Path(self.frames_dir).is_dir():
            raise ConfigError(f"frames_dir={self.frames_dir!r} is not a folder")
        if self.out is not None:
            self.out = check_out_dir(self.out)
