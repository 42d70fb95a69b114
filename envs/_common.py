"""Helpers shared by the CLIP-friendly environments: argument checks and frame drawing.

The classic-control environments draw their frames *directly at the size the caller asked
for*: CLIP sees 224x224 frames, and drawing at 600x400 only to resize on every step would
waste time and blur thin shapes (the pole, the flag). They draw through a small
:class:`Painter`: by default the NumPy rasteriser of :mod:`._raster`, which reproduces
pygame's pixels without importing pygame and costs a fraction of its time (rendering is
a large share of a CLIP-rewarded training step); ``renderer="pygame"`` draws with pygame
itself, on an off-screen ``Surface`` (no window or display is ever opened).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import logger

from vlmrm.model_spec import DEFAULT_INPUT_SIZE

if TYPE_CHECKING:
    import pygame

# pygame prints a banner on import unless told not to; the environments import it lazily.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Without a display, SDL's video init (gymnasium's classic-control envs call it even for
# rgb_array) prints "error: XDG_RUNTIME_DIR is invalid ..." to stderr, which reads like one
# of our errors; its dummy driver renders the same off-screen frames and prints nothing.
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

#: Default frame size: the common CLIP input resolution, so frames need no resize before
#: encoding (the trainer's ``env.render_size=auto`` uses the reward model's own).
DEFAULT_RENDER_SIZE: tuple[int, int] = (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)

Color = tuple[int, int, int]


def check_size(width: object, height: object) -> tuple[int, int]:
    """Return ``(width, height)`` as ints, or raise a ``ValueError`` naming the bad one.

    Checked at construction so that a typo fails at once rather than deep inside pygame
    or the OpenGL context on the first ``render()``.
    """
    for name, value in (("width", width), ("height", height)):
        if not is_positive_int(value):
            raise ValueError(f"{name} must be a positive int (pixels), got {value!r}")
    return int(width), int(height)  # type: ignore[call-overload]


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an integer (a NumPy one too, but not a ``bool``) above zero."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value > 0


def check_render_mode(render_mode: str | None, supported: Sequence[str]) -> None:
    """Raise a ``ValueError`` if ``render_mode`` is neither ``None`` nor supported."""
    if render_mode is not None and render_mode not in supported:
        raise ValueError(
            f"render_mode must be None or one of {list(supported)}, got {render_mode!r}"
        )


def surface_to_array(surface: pygame.Surface) -> np.ndarray:
    """Copy a pygame surface into a C-contiguous, writeable ``uint8`` array ``(H, W, 3)``.

    ``pygame.surfarray`` returns a transposed (W, H, 3) view; going through the raw RGB
    bytes instead gives row-major memory that ``torch.from_numpy`` accepts without copy.
    """
    import pygame

    width, height = surface.get_size()
    raw = bytearray(pygame.image.tobytes(surface, "RGB"))
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)


def _int_points(points: Sequence[tuple[float, float]]) -> tuple[list[int], list[int]]:
    """Vertices rounded as they are handed to pygame (Python's round: half to even)."""
    return [round(x) for x, _ in points], [round(y) for _, y in points]


#: Renderers of the classic-control envs: the NumPy rasteriser (default) and pygame.
RENDERERS = ("numpy", "pygame")


class Painter:
    """The few drawing calls the classic-control envs make, on a frame of one colour.

    ``polygon`` is a filled polygon with an anti-aliased outline and ``circle`` a filled,
    anti-aliased circle (smooth edges at small sizes), both at rounded integer
    coordinates; ``line`` is a one-pixel line, ``aalines`` an anti-aliased polyline.
    :class:`NumpyPainter` draws with :mod:`._raster` (the same pixels, no pygame);
    :class:`PygamePainter` with pygame itself (``renderer="pygame"``, the reference).
    """

    def polygon(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        raise NotImplementedError

    def circle(self, center: tuple[float, float], radius: float, color: Color) -> None:
        raise NotImplementedError

    def line(self, start: tuple[int, int], end: tuple[int, int], color: Color) -> None:
        raise NotImplementedError

    def aalines(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        raise NotImplementedError

    def static(self, key: Hashable, draw: Callable[[Painter], None]) -> None:
        """Paint the part of the frame that is the same in every frame, first.

        ``key`` must identify everything ``draw`` depends on (size, fixed positions): a
        painter may keep the result and copy it into later frames instead of drawing.
        """
        draw(self)

    def to_array(self) -> np.ndarray:
        """The frame as a C-contiguous, writeable ``uint8`` array ``(H, W, 3)``."""
        raise NotImplementedError


class NumpyPainter(Painter):
    """Draws into a NumPy array with pygame's own pixel arithmetic (see :mod:`._raster`)."""

    def __init__(self, width: int, height: int, background: Color) -> None:
        from ._raster import Canvas

        self.canvas = Canvas(width, height, background)

    def polygon(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        self.canvas.polygon(*_int_points(points), color)

    def circle(self, center: tuple[float, float], radius: float, color: Color) -> None:
        self.canvas.disc(round(center[0]), round(center[1]), max(1, round(radius)), color)

    def line(self, start: tuple[int, int], end: tuple[int, int], color: Color) -> None:
        (x1, y1), (x2, y2) = start, end
        if y1 == y2:
            self.canvas.hline(int(x1), int(x2), int(y1), color)
        elif x1 == x2:
            self.canvas.vline(int(x1), int(y1), int(y2), color)
        else:
            raise NotImplementedError("the NumPy renderer draws horizontal and vertical lines only")

    def aalines(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        self.canvas.aalines(points, color)

    def static(self, key: Hashable, draw: Callable[[Painter], None]) -> None:
        # The scenery's anti-aliased polyline is a slow scalar port: drawn once per key.
        cached = _STATIC_LAYERS.get(key)
        if cached is None:
            draw(self)
            if len(_STATIC_LAYERS) >= 16:
                _STATIC_LAYERS.clear()
            _STATIC_LAYERS[key] = cached = self.canvas.pixels.copy()
        else:
            np.copyto(self.canvas.pixels, cached)

    def to_array(self) -> np.ndarray:
        return self.canvas.pixels


#: The static parts of frames, by key (see :meth:`Painter.static`).
_STATIC_LAYERS: dict[Hashable, np.ndarray] = {}


class PygamePainter(Painter):
    """Draws on an off-screen pygame surface (no display needed), copied out at the end."""

    def __init__(self, width: int, height: int, background: Color) -> None:
        import pygame

        self.surface = pygame.Surface((width, height))
        self.surface.fill(background)

    def polygon(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        from pygame import gfxdraw

        pts = list(zip(*_int_points(points), strict=True))
        gfxdraw.filled_polygon(self.surface, pts, color)
        gfxdraw.aapolygon(self.surface, pts, color)

    def circle(self, center: tuple[float, float], radius: float, color: Color) -> None:
        from pygame import gfxdraw

        x, y, r = round(center[0]), round(center[1]), max(1, round(radius))
        gfxdraw.filled_circle(self.surface, x, y, r, color)
        gfxdraw.aacircle(self.surface, x, y, r, color)

    def line(self, start: tuple[int, int], end: tuple[int, int], color: Color) -> None:
        import pygame

        pygame.draw.line(self.surface, color, start, end)

    def aalines(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        import pygame

        pygame.draw.aalines(self.surface, color, False, points)

    def to_array(self) -> np.ndarray:
        return surface_to_array(self.surface)


def new_painter(renderer: str, width: int, height: int, background: Color) -> Painter:
    """A :class:`Painter` of ``renderer`` (one of :data:`RENDERERS`) filled with ``background``."""
    if renderer == "pygame":
        return PygamePainter(width, height, background)
    return NumpyPainter(width, height, background)


def check_renderer(renderer: object) -> str:
    """``renderer`` if it names one of :data:`RENDERERS`, else a ``ValueError`` naming them."""
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {list(RENDERERS)}, got {renderer!r}")
    return str(renderer)


class ClassicControlMixin:
    """What the classic-control environments drawn by a :class:`Painter` share; listed before gymnasium's
    environment class in the bases (``class CartPoleEnv(ClassicControlMixin, CartPoleEnv)``).

    * ``__init__(render_mode, width, height, renderer, **kwargs)`` checks the render mode,
      the frame size and the renderer before gymnasium's constructor (called with
      ``render_mode`` and ``kwargs``) runs, and sets ``screen_width``/``screen_height``;
    * ``reset`` and ``step`` add the subclass's ``_info()`` to gymnasium's ``info``;
    * ``render`` returns ``None`` (with gymnasium's warning) without ``render_mode`` and
      before the first ``reset``, else the frame the subclass's ``_draw(painter)`` paints
      at the frame size, as an array; ``close`` has no window to shut.
    """

    metadata: dict[str, Any]
    render_mode: str | None
    state: Any
    screen_width: int
    screen_height: int

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = DEFAULT_RENDER_SIZE[0],
        height: int = DEFAULT_RENDER_SIZE[1],
        renderer: str = "numpy",
        **kwargs: Any,
    ) -> None:
        check_render_mode(render_mode, self.metadata["render_modes"])
        width, height = check_size(width, height)
        self.renderer = check_renderer(renderer)
        super().__init__(render_mode=render_mode, **kwargs)  # type: ignore[call-arg]
        self.screen_width, self.screen_height = width, height

    def _info(self) -> dict[str, Any]:
        """``state`` and ``success`` of the current state, added to every ``info``."""
        raise NotImplementedError

    def _background(self) -> Color:
        """The colour of every pixel the drawing does not cover."""
        raise NotImplementedError

    def _draw(self, painter: Painter) -> None:
        """Paint the current state on a ``screen_width`` x ``screen_height`` frame."""
        raise NotImplementedError

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        return obs, {**info, **self._info()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        return obs, reward, terminated, truncated, {**info, **self._info()}

    def render(self) -> np.ndarray | None:
        """Draw the current state as a ``uint8`` array of shape ``(height, width, 3)``."""
        if self.render_mode is None:
            logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        if self.state is None:
            return None
        painter = new_painter(self.renderer, self.screen_width, self.screen_height, self._background())
        self._draw(painter)
        return painter.to_array()

    def close(self) -> None:
        # No window is ever opened, so there is no pygame display to shut down.
        self.screen = None
