"""Helpers shared by the CLIP-friendly environments: argument checks and pygame drawing.

The classic-control environments draw their frames with pygame *directly at the size the
caller asked for*: CLIP sees 224x224 frames, and drawing at 600x400 only to resize on
every step would waste time and blur thin shapes (the pole, the flag). pygame draws into
an off-screen ``Surface``; no window or display is ever opened.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import logger

if TYPE_CHECKING:
    import pygame

# pygame prints a banner on import unless told not to; the environments import it lazily.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Without a display, SDL's video init (gymnasium's classic-control envs call it even for
# rgb_array) prints "error: XDG_RUNTIME_DIR is invalid ..." to stderr, which reads like one
# of our errors; its dummy driver renders the same off-screen frames and prints nothing.
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

#: Default frame size: CLIP's input resolution, so frames need no resize before encoding.
DEFAULT_RENDER_SIZE: tuple[int, int] = (224, 224)

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


def fill_polygon(
    surface: pygame.Surface, points: Sequence[tuple[float, float]], color: Color
) -> None:
    """Draw a filled polygon with an anti-aliased outline (smooth edges at small sizes)."""
    from pygame import gfxdraw

    pts = [(round(x), round(y)) for x, y in points]
    gfxdraw.filled_polygon(surface, pts, color)
    gfxdraw.aapolygon(surface, pts, color)


def fill_circle(
    surface: pygame.Surface, center: tuple[float, float], radius: float, color: Color
) -> None:
    """Draw a filled, anti-aliased circle; radius is at least one pixel so it never vanishes."""
    from pygame import gfxdraw

    x, y, r = round(center[0]), round(center[1]), max(1, round(radius))
    gfxdraw.filled_circle(surface, x, y, r, color)
    gfxdraw.aacircle(surface, x, y, r, color)


def new_surface(width: int, height: int, background: Color) -> pygame.Surface:
    """An off-screen pygame surface filled with ``background`` (no display needed)."""
    import pygame

    surface = pygame.Surface((width, height))
    surface.fill(background)
    return surface


class ClassicControlMixin:
    """What the pygame-drawn classic-control environments share; listed before gymnasium's
    environment class in the bases (``class CartPoleEnv(ClassicControlMixin, CartPoleEnv)``).

    * ``__init__(render_mode, width, height, **kwargs)`` checks the render mode and the
      frame size before gymnasium's constructor (called with ``render_mode`` and
      ``kwargs``) runs, and sets ``screen_width``/``screen_height``;
    * ``reset`` and ``step`` add the subclass's ``_info()`` to gymnasium's ``info``;
    * ``render`` returns ``None`` (with gymnasium's warning) without ``render_mode`` and
      before the first ``reset``, else the surface of the subclass's ``_draw()``, at the
      frame size, as an array; ``close`` has no window to shut.
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
        **kwargs: Any,
    ) -> None:
        check_render_mode(render_mode, self.metadata["render_modes"])
        width, height = check_size(width, height)
        super().__init__(render_mode=render_mode, **kwargs)  # type: ignore[call-arg]
        self.screen_width, self.screen_height = width, height

    def _info(self) -> dict[str, Any]:
        """``state`` and ``success`` of the current state, added to every ``info``."""
        raise NotImplementedError

    def _draw(self) -> pygame.Surface:
        """The current state drawn on a ``screen_width`` x ``screen_height`` surface."""
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
        return surface_to_array(self._draw())

    def close(self) -> None:
        # No window is ever opened, so there is no pygame display to shut down.
        self.screen = None
