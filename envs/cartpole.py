"""CartPole with gymnasium's CartPole-v1 dynamics, rendered directly at any frame size.

Gymnasium's renderer hard-codes pixel sizes for a 600x400 window (a 50 px cart, a 10 px
pole), so merely shrinking the window to 224x224 gives a cart that is too big next to
the pole. Here every shape is laid out in world units (metres) and scaled to the
requested frame, keeping gymnasium's look (white background, black cart and track,
brown pole, blue axle). A 600x400 frame matches gymnasium's; other sizes show what
resizing gymnasium's frame to cover them and centre-cropping would show (the framing
CLIP saw in the VLM-RM paper, whose preprocessing does exactly that), so at 224x224 the
visible track is 3.2 m wide and the cart leaves the frame near the track's ends.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv as _GymCartPoleEnv

from ._common import DEFAULT_RENDER_SIZE, ClassicControlMixin, Color, Painter

#: ``info["success"]`` is true while ``|theta|`` is below this (radians, about 5.7 deg).
#: The episode itself only ends past 12 deg; "success" is the stricter "upright" notion
#: a CLIP goal like "pole vertically upright" is meant to capture, for evaluating rewards.
UPRIGHT_ANGLE = 0.1

_BACKGROUND = (255, 255, 255)
_TRACK = (0, 0, 0)
_CART = (0, 0, 0)
_POLE = (202, 152, 101)
_AXLE = (129, 132, 203)

# Gymnasium's reference layout: frame size, pixels per metre, track height from the bottom.
_REF_SIZE = (600, 400)
_REF_SCALE = 125.0
_REF_TRACK_HEIGHT = 100
# Shapes in metres (gymnasium's pixel sizes divided by 125 px per metre).
_CART_WIDTH = 0.4
_CART_HEIGHT = 0.24
_POLE_WIDTH = 0.08
_AXLE_OFFSET = _CART_HEIGHT / 4


class CartPoleEnv(ClassicControlMixin, _GymCartPoleEnv):
    """CartPole-v1 (same dynamics, observations and +1-per-step reward) for CLIP rewards.

    Args:
        render_mode: ``"rgb_array"`` or ``None``.
        width: frame width in pixels.
        height: frame height in pixels; frames are drawn at this size.
        sutton_barto_reward: passed to gymnasium's CartPole (0 per step, -1 on failure).
        renderer: ``"numpy"`` (default: the NumPy rasteriser, pygame's pixels without
            pygame) or ``"pygame"``.

    ``info`` holds ``state`` (``x, x_dot, theta, theta_dot`` as float64) and ``success``
    (``|theta| < UPRIGHT_ANGLE``), in both ``reset`` and ``step``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = DEFAULT_RENDER_SIZE[0],
        height: int = DEFAULT_RENDER_SIZE[1],
        sutton_barto_reward: bool = False,
        renderer: str = "numpy",
    ) -> None:
        super().__init__(
            render_mode, width, height, renderer, sutton_barto_reward=sutton_barto_reward
        )

    def _info(self) -> dict[str, Any]:
        state = np.array(self.state, dtype=np.float64)
        return {"state": state, "success": bool(abs(state[2]) < UPRIGHT_ANGLE)}

    def _background(self) -> Color:
        return _BACKGROUND

    def _draw(self, painter: Painter) -> None:
        w, h = self.screen_width, self.screen_height
        # Gymnasium's 600x400 layout (125 px per metre, track 100 px above the bottom),
        # scaled to cover the requested frame and centre-cropped: a 224x224 frame shows
        # what CLIP's own resize + centre crop would keep of gymnasium's frame.
        zoom = max(w / _REF_SIZE[0], h / _REF_SIZE[1])
        scale = _REF_SCALE * zoom
        # (-1: gymnasium draws bottom-up and then flips, which lands one row higher.)
        track_y = h / 2 - 1 + (_REF_SIZE[1] / 2 - _REF_TRACK_HEIGHT) * zoom
        pole_len = 2 * self.length

        x, _, theta, _ = (float(v) for v in self.state)
        cart_x = w / 2 + x * scale

        def px(dx: float, dy: float) -> tuple[float, float]:
            """Metres relative to the cart's centre on the track -> pixel coordinates."""
            return cart_x + dx * scale, track_y - dy * scale

        painter.line((0, round(track_y)), (w, round(track_y)), _TRACK)

        hw, hh = _CART_WIDTH / 2, _CART_HEIGHT / 2
        painter.polygon([px(-hw, -hh), px(-hw, hh), px(hw, hh), px(hw, -hh)], _CART)

        # The pole rotates about the axle; theta > 0 leans it to the right (+x).
        sin_t, cos_t = math.sin(theta), math.cos(theta)
        corners = []
        for u, v in (
            (-_POLE_WIDTH / 2, -_POLE_WIDTH / 2),
            (-_POLE_WIDTH / 2, pole_len - _POLE_WIDTH / 2),
            (_POLE_WIDTH / 2, pole_len - _POLE_WIDTH / 2),
            (_POLE_WIDTH / 2, -_POLE_WIDTH / 2),
        ):
            corners.append(px(u * cos_t + v * sin_t, _AXLE_OFFSET - u * sin_t + v * cos_t))
        painter.polygon(corners, _POLE)
        painter.circle(px(0.0, _AXLE_OFFSET), _POLE_WIDTH / 2 * scale, _AXLE)
