"""Streaming frames out of videos, image folders and arrays, and writing videos.

Scoring a video must not need the whole video in memory: an hour of 224×224 frames at
30 fps is 16 GB of ``uint8``. Everything here is a generator: :func:`iter_batches`
decodes frames one at a time (through ``imageio.v3.imiter``, which pipes raw frames out of
an ffmpeg subprocess for mp4/webm/mkv/avi/mov and reads GIFs frame by frame with Pillow)
and hands out ``(B, H, W, 3)`` batches, so peak memory is one batch whatever the length.

Sources, all giving ``uint8`` RGB frames:

* a video file anything ffmpeg or Pillow reads (``.mp4``, ``.webm``, ``.gif``, ``.mkv``...);
* a folder of images (``.png``, ``.jpg``, ...), in natural order (``2.png`` before
  ``10.png``); PNG is lossless, so these are the exact frames;
* a NumPy array / torch tensor ``(N, H, W, 3)`` (sliced, never copied whole), or any
  iterable of ``(H, W, 3)`` frames (consumed once).

Frame selection: ``start``/``end`` are times in seconds (``start <= t < end``, with
``t = index / fps``) and ``stride`` keeps every ``stride``-th frame from the first one
in range. Frames before ``start`` are decoded and dropped (exact, not keyframe-seeking);
reading stops as soon as ``end`` is passed.

Bad input (missing, empty, corrupt or unreadable files, frames of changing size) raises
:class:`VideoError` with a one-line message naming the file and what to do.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vlmrm.errors import ConfigError
from vlmrm.runtime.images import load_image, to_rgb_uint8
from vlmrm.runtime.paths import missing_reason

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: Extensions read through Pillow (frame by frame); everything else goes to ffmpeg.
_PILLOW_VIDEO_EXTS = (".gif",)
#: ffmpeg encoders by container; others get imageio-ffmpeg's default (H.264).
_CODECS = {".webm": "libvpx", ".ogv": "libtheora", ".wmv": "msmpeg4"}
VIDEO_EXTS = (
    ".mp4",
    ".webm",
    ".gif",
    ".mkv",
    ".avi",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ogv",
    ".wmv",
)

FrameSource = (
    str | os.PathLike | np.ndarray | Any
)  # a path, an array/tensor, or an iterable of frames


class VideoError(ConfigError):
    """A video or image folder cannot be read (missing, empty, corrupt, inconsistent)."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a frame source before decoding it.

    Attributes:
        name: display name (the path as given, or ``"<array>"``).
        kind: ``"video"``, ``"images"``, ``"array"`` or ``"iterable"``.
        fps: frames per second; ``None`` when the source carries no timing (image folders,
            arrays) and none was given.
        n_frames: number of frames, or an estimate from duration × fps for ffmpeg
            videos (containers do not always store it); ``None`` when unknown.
        size: ``(height, width)`` when known.
    """

    name: str
    kind: str
    fps: float | None
    n_frames: int | None
    size: tuple[int, int] | None = None


def _first_line(exc: BaseException) -> str:
    """The most useful line of an exception message (ffmpeg puts the cause last)."""
    text = str(exc).strip()
    if "=== stderr ===" in text:  # imageio's ffmpeg errors: banner first, cause last
        head, _, tail = text.partition("=== stderr ===")
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        cause = next(
            (
                ln
                for ln in reversed(lines)
                if not ln.startswith(("ffmpeg version", "built with", "configuration:", "lib"))
            ),
            "",
        )
        text = f"{head.strip()}: {cause}" if cause else head.strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    msg = lines[0] if lines else type(exc).__name__
    return msg[:300]


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder in natural order; :class:`VideoError` when there are none."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise VideoError(
            f"folder {str(folder)!r} contains no image files ({', '.join(IMAGE_EXTS)}); "
            "pass a folder of frames such as 000.png, 001.png, ... or a video file"
        )
    return sorted(files, key=lambda p: _natural_key(p.name))


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    reason = missing_reason(p)
    if reason == "does not exist":
        raise VideoError(
            f"video {str(path)!r} does not exist; check the path (relative paths start at {os.getcwd()})"
        )
    if reason is not None:
        raise VideoError(f"video {str(path)!r} {reason}; point it at a video file or a folder of frames")
    if p.is_file() and p.stat().st_size == 0:
        raise VideoError(
            f"video file {str(path)!r} is empty (0 bytes); was the recording interrupted?"
        )
    return p


def _to_rgb_uint8(frame: Any, where: str) -> np.ndarray:
    """One decoded frame → ``(H, W, 3)`` uint8 by :func:`vlmrm.runtime.images.to_rgb_uint8`
    (the one conversion), its refusals raised as :class:`VideoError`."""
    try:
        return to_rgb_uint8(frame, where)
    except VideoError:
        raise
    except ConfigError as exc:
        raise VideoError(str(exc)) from None


def _check_source_params(
    stride: int, start: float | None, end: float | None, fps: float | None
) -> None:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ConfigError(f"stride must be a positive integer (1 = every frame), got {stride!r}")
    for key, val in (("start", start), ("end", end)):
        if val is not None and (
            not isinstance(val, (int, float))
            or isinstance(val, bool)
            or not math.isfinite(val)
            or val < 0
        ):
            raise ConfigError(f"{key} must be a time in seconds >= 0, got {val!r}")
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"end ({end}) must be after start ({start}); both are times in seconds")
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0
    ):
        raise ConfigError(f"fps must be a positive number of frames per second, got {fps!r}")


def probe(source: FrameSource, fps: float | None = None) -> VideoInfo:
    """Describe a source without decoding its frames; raise :class:`VideoError` if unreadable.

    ``fps`` overrides the source's own frame rate (and gives one to image folders/arrays).
    """
    if fps is not None:
        _check_source_params(1, None, None, fps)
    if isinstance(source, (str, os.PathLike)):
        path = _check_path(source)
        name = os.fspath(source)
        if path.is_dir():
            files = list_image_files(path)
            return VideoInfo(name, "images", fps, len(files))
        import imageio.v3 as iio

        try:
            meta = iio.immeta(path)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is "cannot read this file"
            raise VideoError(
                f"cannot read video {name!r}: {_first_line(exc)}. Is it a complete video file "
                f"({', '.join(VIDEO_EXTS[:4])}, ...) or a folder of PNG frames?"
            ) from None
        src_fps = meta.get("fps")
        if src_fps is None and meta.get("duration"):  # GIF: per-frame duration in ms
            src_fps = 1000.0 / float(meta["duration"])
        the_fps = float(fps if fps is not None else src_fps) if (fps or src_fps) else None
        n = meta.get("nframes")
        if n is None or not math.isfinite(n):
            dur = meta.get("duration")
            n = (
                round(float(dur) * float(src_fps))
                if (dur and src_fps and meta.get("plugin") == "ffmpeg")
                else None
            )
            if n is None and path.suffix.lower() in _PILLOW_VIDEO_EXTS:
                try:
                    n = int(iio.improps(path).n_images)
                except Exception:  # noqa: BLE001 - the count is only for the progress bar
                    n = None
        size = meta.get("size")
        hw = (int(size[1]), int(size[0])) if size else None
        return VideoInfo(name, "video", the_fps, None if n is None else int(n), hw)
    if isinstance(source, np.ndarray) or hasattr(source, "detach"):
        shape = tuple(source.shape)
        if len(shape) == 3:
            return VideoInfo("<array>", "array", fps, 1, shape[:2])
        if len(shape) != 4:
            raise VideoError(f"frames array must have shape (N, H, W, 3), got {shape}")
        return VideoInfo("<array>", "array", fps, shape[0], shape[1:3])
    if isinstance(source, Iterable):
        n = len(source) if hasattr(source, "__len__") else None
        return VideoInfo("<frames>", "iterable", fps, n)
    raise ConfigError(
        f"cannot read frames from a {type(source).__name__}; pass a video path, a folder of "
        "images, an (N, H, W, 3) uint8 array or an iterable of (H, W, 3) frames"
    )


def _raw_frames(source: FrameSource, info: VideoInfo) -> Iterator[Any]:
    """All frames of the source in order, undecoded-format (converted later), lazily."""
    if info.kind == "images":
        for f in list_image_files(source):
            try:
                yield load_image(f)
            except ConfigError as exc:
                raise VideoError(str(exc)) from None
    elif info.kind == "video":
        import imageio.v3 as iio

        it = iio.imiter(Path(source))
        try:
            while True:
                try:
                    frame = next(it)
                except StopIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - decoder failures mid-stream
                    raise VideoError(
                        f"cannot decode video {info.name!r}: {_first_line(exc)}"
                    ) from None
                yield frame
        finally:
            it.close()  # stops the ffmpeg subprocess when we stop early
    elif info.kind == "array":
        arr = source if len(source.shape) == 4 else source[None]
        for i in range(arr.shape[0]):
            yield arr[i]
    else:
        yield from source


def iter_frames(
    source: FrameSource,
    *,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    info: VideoInfo | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for the selected frames; ``index`` counts from the source's first frame.

    Frames are ``(H, W, 3)`` uint8. ``start``/``end`` (seconds) need a frame rate: the
    source's own or ``fps``.
    """
    _check_source_params(stride, start, end, fps)
    info = info or probe(source, fps=fps)
    rate = info.fps
    if (start is not None or end is not None) and rate is None:
        raise ConfigError(
            f"{info.name!r} has no frame rate, so start/end (seconds) cannot be converted to "
            "frames; pass fps=<frames per second>"
        )
    first = 0 if start is None else math.ceil(start * rate - 1e-9)
    stop = None if end is None else math.ceil(end * rate - 1e-9)
    shape: tuple[int, ...] | None = None
    selected = 0
    decoded = 0
    for index, raw in enumerate(_raw_frames(source, info)):
        if stop is not None and index >= stop:
            break
        decoded = index + 1
        if index < first or (index - first) % stride:
            continue
        frame = _to_rgb_uint8(raw, f"{info.name!r} frame {index}")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise VideoError(
                f"{info.name!r}: frame {index} has shape {frame.shape} but earlier frames have "
                f"{shape}; all frames must have the same size"
            )
        selected += 1
        yield index, frame
    expected = info.n_frames if info.kind == "video" else None
    if stop is None and expected and decoded < 0.9 * expected - 1:
        # ffmpeg decodes what it can of a damaged file without failing: say so
        warnings.warn(
            f"{info.name!r} ended after {decoded} of about {expected} frames (from its duration); "
            "the file may be truncated or damaged",
            stacklevel=2,
        )
    if selected == 0:
        where = "" if start is None and end is None else f" in the time range [{start}, {end}) s"
        raise VideoError(
            f"{info.name!r} has no frames{where}; is the video empty or the range outside it?"
        )


def iter_batches(
    source: FrameSource,
    batch_size: int = 64,
    *,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    info: VideoInfo | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices (B,), frames (B, H, W, 3) uint8)`` batches; at most one batch in memory.

    Arrays are sliced without copying when no stride/range applies.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    info = info or probe(source, fps=fps)
    if (
        info.kind == "array"
        and stride == 1
        and start is None
        and end is None
        and hasattr(source, "dtype")
    ):
        arr = source if len(source.shape) == 4 else source[None]
        if hasattr(arr, "detach"):
            arr = arr.detach().cpu().numpy()
        arr = np.asarray(arr)
        if arr.dtype == np.uint8 and arr.shape[-1] == 3:
            if arr.shape[0] == 0:
                raise VideoError("the frames array is empty (N = 0)")
            for s in range(0, arr.shape[0], batch_size):
                chunk = arr[s : s + batch_size]
                yield np.arange(s, s + chunk.shape[0]), chunk
            return
    idx: list[int] = []
    buf: list[np.ndarray] = []
    for i, frame in iter_frames(source, stride=stride, start=start, end=end, fps=fps, info=info):
        idx.append(i)
        buf.append(frame)
        if len(buf) == batch_size:
            yield np.asarray(idx), np.stack(buf)
            idx, buf = [], []
    if buf:
        yield np.asarray(idx), np.stack(buf)


def read_video(source: FrameSource, **kwargs: Any) -> np.ndarray:
    """All selected frames as one ``(N, H, W, 3)`` array — for short clips only (no streaming)."""
    return np.stack([f for _, f in iter_frames(source, **kwargs)])


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height/width by repeating the last row/column (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


class VideoWriter:
    """Write frames one at a time to an mp4/webm/... through ffmpeg (streaming, no buffering).

    Odd sizes are padded by one edge row/column rather than rescaled, so every original
    pixel survives. ``quality`` is imageio-ffmpeg's 1–10 scale (libx264: CRF = 51·(1 − q/10));
    ``None`` leaves the rate to ``output_params``. ``codec`` overrides the container's
    encoder (e.g. ``libvpx-vp9`` for ``.webm``); ``output_params`` go to ffmpeg as they are.

    Example:
        >>> with VideoWriter("out.mp4", fps=30) as w:  # doctest: +SKIP
        ...     for frame in frames:
        ...         w.write(frame)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 30.0,
        quality: float | None = 8.0,
        *,
        codec: str | None = None,
        output_params: list[str] | None = None,
    ) -> None:
        if not fps or fps <= 0:
            raise ConfigError(f"fps must be positive, got {fps!r}")
        if quality is not None and not 1 <= quality <= 10:
            raise ConfigError(f"quality must be in [1, 10], got {quality!r}")
        if Path(path).suffix.lower() in _PILLOW_VIDEO_EXTS:
            raise ConfigError(
                f"VideoWriter writes ffmpeg formats (.mp4, .webm, ...), not {Path(path).suffix}; use write_video for GIFs"
            )
        self.path = Path(path)
        self.fps = float(fps)
        self.quality = None if quality is None else float(quality)
        self.codec = codec or _CODECS.get(self.path.suffix.lower())
        self.output_params = list(output_params or [])
        self.n_frames = 0
        self._gen = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 frame; all frames must have the first one's size."""
        frame = _even(_to_rgb_uint8(frame, f"frame {self.n_frames} for {str(self.path)!r}"))
        h, w = frame.shape[:2]
        if self._gen is None:
            import imageio_ffmpeg

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (h, w)
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path),
                (w, h),
                # a float: older imageio-ffmpeg releases accept no Fraction (ffmpeg turns
                # the float back into the same rational, e.g. 29.97 -> 2997/100)
                fps=float(Fraction(self.fps).limit_denominator(10000)),
                quality=self.quality,
                codec=self.codec,
                output_params=self.output_params,
                macro_block_size=2,
                ffmpeg_log_level="error",
            )
            self._gen.send(None)
        elif (h, w) != self._size:
            raise VideoError(
                f"frame {self.n_frames} has size {(h, w)}, earlier frames {self._size}"
            )
        self._gen.send(frame)
        self.n_frames += 1

    def close(self) -> None:
        """Finish the file (ffmpeg writes the index on close)."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 30.0, quality: float = 8.0
) -> int:
    """Write frames (an array or any iterable, consumed lazily) to a video; return the count.

    A path without a video extension, or an existing folder, gets PNG frames instead
    (``000000.png``, ...): lossless, for exact round trips.
    """
    p = Path(path)
    if (
        p.suffix.lower() in _PILLOW_VIDEO_EXTS
    ):  # GIF through Pillow (holds the frames: keep GIFs short)
        import imageio.v3 as iio

        arr = np.stack([_to_rgb_uint8(f, f"frame {i}") for i, f in enumerate(frames)])
        iio.imwrite(p, arr, duration=1000.0 / fps, loop=0)
        return int(arr.shape[0])
    if p.suffix.lower() not in VIDEO_EXTS or p.is_dir():
        import imageio.v3 as iio

        p.mkdir(parents=True, exist_ok=True)
        n = 0
        for n, frame in enumerate(frames, start=1):  # noqa: B007 - n is the count afterwards
            iio.imwrite(p / f"{n - 1:06d}.png", _to_rgb_uint8(frame, f"frame {n - 1}"))
        return n
    with VideoWriter(p, fps=fps, quality=quality) as w:
        for frame in frames:
            w.write(frame)
    return w.n_frames
