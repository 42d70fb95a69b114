"""Which videos a labelling sheet draws from: run folders, video files, folders of either.

A training run (``python -m vlmrm.train``) writes its evaluation episodes to
``<run>/videos/step_<N>.mp4``; a ``python -m vlmrm.record`` folder writes
``videos/episode_NNN.mp4``. Either folder is a source as it is, and so is a folder
holding several runs (``runs/``), a folder of video files, a single video, or a folder of
PNG frames (one video, as ``vlmrm.score`` reads it).
"""

from __future__ import annotations

from pathlib import Path

from vlmrm.errors import ConfigError
from vlmrm.video import IMAGE_EXTS, VIDEO_EXTS


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)


def _has_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_EXTS for p in folder.iterdir())


def videos_of(source: str) -> list[str]:
    """The videos one source stands for, in name order (``step_<N>`` sorts by step).

    Raises:
        ConfigError: the path does not exist, or a folder holds no video, run or frames.
    """
    path = Path(source)
    if path.is_file():
        return [source]
    if not path.is_dir():
        raise ConfigError(f"{source!r} does not exist; pass a training run folder, a video file or a folder of videos")
    if (path / "videos").is_dir():  # a training run or a record folder
        found = _videos_in(path / "videos")
        if not found:
            raise ConfigError(
                f"{str(path / 'videos')!r} holds no video yet; a run writes videos/step_<N>.mp4 at each "
                "evaluation (eval.video=true)"
            )
        return [str(p) for p in found]
    found = _videos_in(path)
    if found:
        return [str(p) for p in found]
    runs = sorted(p for p in path.iterdir() if p.is_dir() and (p / "videos").is_dir())
    if runs:
        return [str(v) for run in runs for v in _videos_in(run / "videos")]
    if _has_images(path):
        return [source]
    raise ConfigError(
        f"{source!r} holds no videos ({', '.join(VIDEO_EXTS[:4])}, ...), no run folders (with videos/) "
        "and no image frames"
    )


def resolve_sources(sources: list[str]) -> list[str]:
    """Every video of every source, each once, in the order given."""
    seen: dict[str, None] = {}
    for source in sources:
        for video in videos_of(source):
            seen.setdefault(video, None)
    return list(seen)


def episodes_per_video(video: str) -> int | None:
    """How many evaluation episodes a training run put back to back in each of its videos
    (its ``config.yaml``'s ``eval.episodes``); ``None`` when the video is not a run's."""
    path = Path(video)
    config = path.parent.parent / "config.yaml"
    if path.parent.name != "videos" or not config.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        return int(data["eval"]["episodes"])
    except Exception:  # noqa: BLE001 - only for a note; an odd config is no reason to stop
        return None


def episode_end_notes(videos: list[str]) -> list[str]:
    """Runs whose videos hold several episodes: ``sample=episode_end`` sees only the last one's end."""
    runs: dict[str, int] = {}
    for video in videos:
        n = episodes_per_video(video)
        if n is not None and n > 1:
            runs[str(Path(video).parent.parent)] = n
    return [
        f"note: the videos of {run} hold {n} evaluation episodes each (eval.episodes={n}); "
        "sample=episode_end takes the last frame of each video, the end of its last episode"
        for run, n in runs.items()
    ]
