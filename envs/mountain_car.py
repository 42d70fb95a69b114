"""MountainCarContinuous with gymnasium's dynamics and a clean, CLIP-friendly rendering.

Gymnasium draws a thin black line on white with a small black box for the car: far from
the photos CLIP was trained on, so a prompt like "a car at the peak of the mountain"
barely changes its similarity. This renderer keeps the geometry (same hill, same
positions) but paints a plain sky, a filled grassy hill, a red car with wheels and a
yellow goal flag, drawn directly at the requested size with one uniform scale (the car
is not stretched on non-square frames).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv

from ._common import DEFAULT_RENDER_SIZE, ClassicControlMixin, Color, Painter

_ToPixels = Callable[[float, float], tuple[float, float]]

#: Plain background colour (RGB); every pixel that is not hill, car or flag has it.
SKY_COLOR = (160, 206, 240)
GROUND_COLOR = (96, 156, 72)
_GROUND_EDGE = (64, 112, 48)
_CAR_BODY = (205, 38, 38)
_CAR_WINDOW = (200, 230, 250)
_WHEEL = (30, 30, 30)
_HUB = (170, 170, 170)
_FLAG_POLE = (70, 70, 70)
_FLAG = (250, 210, 0)

# Visible world: x spans the track, y from the ground (0) up to above the flag's top.
_WORLD_TOP = 1.3
# Car and flag sizes in world units; the car is larger than gymnasium's (0.12) so that
# it stays recognisable at 224 px. Sizes do not affect the dynamics.
_CAR_LENGTH = 0.2
_CAR_BODY_HEIGHT = 0.05
_WHEEL_RADIUS = 0.022
_FLAG_POLE_HEIGHT = 0.22
_FLAG_SIZE = (0.11, 0.07)


class MountainCarContinuousEnv(ClassicControlMixin, Continuous_MountainCarEnv):
    """MountainCarContinuous-v0 (same dynamics, observations, reward) for CLIP rewards.

    Args:
        render_mode: ``"rgb_array"`` or ``None``.
        width: frame width in pixels.
        height: frame height in pixels; frames are drawn at this size.
        goal_velocity: passed to gymnasium's environment.
        renderer: ``"numpy"`` (default: the NumPy rasteriser, pygame's pixels without
            pygame) or ``"pygame"``.

    ``info`` holds ``state`` (``position, velocity`` as float64) and ``success``
    (``position >= goal_position``, i.e. the car reached the flag), in ``reset`` and
    ``step``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = DEFAULT_RENDER_SIZE[0],
        height: int = DEFAULT_RENDER_SIZE[1],
        goal_velocity: float = 0,
        renderer: str = "numpy",
    ) -> None:
        super().__init__(render_mode, width, height, renderer, goal_velocity=goal_velocity)
        self.state: np.ndarray | None = None

    def _info(self) -> dict[str, Any]:
        state = np.array(self.state, dtype=np.float64)
        return {"state": state, "success": bool(state[0] >= self.goal_position)}

    def _background(self) -> Color:
        return SKY_COLOR

    def _draw(self, painter: Painter) -> None:
        w, h = self.screen_width, self.screen_height
        span = self.max_position - self.min_position
        scale = min(w / span, h / _WORLD_TOP)
        x_off = (w - span * scale) / 2
        y_off = (h - _WORLD_TOP * scale) / 2

        def px(x: float, y: float) -> tuple[float, float]:
            """World coordinates -> pixel coordinates (y grows downwards on screen)."""
            return x_off + (x - self.min_position) * scale, h - y_off - y * scale

        def scenery(p: Painter) -> None:
            # Hill: the height curve across the whole frame width, filled down to the bottom.
            xs = self.min_position + (np.linspace(0, w, max(2, w // 2 + 1)) - x_off) / scale
            curve = [px(float(x), float(y)) for x, y in zip(xs, self._height(xs), strict=True)]
            p.polygon([(0, h), *curve, (w, h)], GROUND_COLOR)
            p.aalines(curve, _GROUND_EDGE)
            self._draw_flag(p, px)

        # Hill, edge and flag are the same in every frame of this size: only the car moves.
        key = ("MountainCar", w, h, self.min_position, self.max_position, self.goal_position)
        painter.static(key, scenery)
        self._draw_car(painter, px, scale)

    def _draw_flag(self, painter: Painter, px: _ToPixels) -> None:
        gx, gy = self.goal_position, float(self._height(self.goal_position))
        top = gy + _FLAG_POLE_HEIGHT
        fw, fh = _FLAG_SIZE
        painter.polygon(
            [px(gx - 0.006, gy), px(gx - 0.006, top), px(gx + 0.006, top), px(gx + 0.006, gy)],
            _FLAG_POLE,
        )
        painter.polygon(
            [px(gx, top), px(gx + fw, top), px(gx + fw, top - fh), px(gx, top - fh)], _FLAG
        )

    def _draw_car(self, painter: Painter, px: _ToPixels, scale: float) -> None:
        pos = float(self.state[0])
        slope = math.atan(0.45 * 3 * math.cos(3 * pos))  # d/dx of the hill height
        tx, ty = math.cos(slope), math.sin(slope)  # along the track
        nx, ny = -ty, tx  # away from the ground
        base = (pos, float(self._height(pos)))

        def at(u: float, v: float) -> tuple[float, float]:
            """Car frame (u along the track, v up from the ground) -> pixels."""
            return px(base[0] + u * tx + v * nx, base[1] + u * ty + v * ny)

        r = _WHEEL_RADIUS
        half = _CAR_LENGTH / 2
        bottom, top = 0.8 * r, 0.8 * r + _CAR_BODY_HEIGHT
        painter.polygon(
             [at(-half, bottom), at(-half, top), at(half, top), at(half, bottom)], _CAR_BODY
        )
        roof = top + 0.035
        painter.polygon(
            [
                at(-0.55 * half, top),
                at(-0.4 * half, roof),
                at(0.25 * half, roof),
                at(0.45 * half, top),
            ],
            _CAR_BODY,
        )
        painter.polygon(
            [
                at(-0.4 * half, top + 0.006),
                at(-0.3 * half, roof - 0.008),
                at(0.2 * half, roof - 0.008),
                at(0.32 * half, top + 0.006),
            ],
            _CAR_WINDOW,
        )
        for u in (-0.6 * half, 0.6 * half):
            painter.circle(at(u, r), r * scale, _WHEEL)
            painter.circle(at(u, r), 0.45 * r * scale, _HUB)
