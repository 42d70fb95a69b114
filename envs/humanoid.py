"""Gymnasium's Humanoid-v5 with a textured scene and a tracking camera, as in VLM-RM.

CLIP was trained on photographs, so the VLM-RM paper rendered the humanoid in a more
natural-looking scene (a sky, a tiled floor, a textured body) seen by a camera that keeps
the body in view; gymnasium's dark, foggy default scene is far from CLIP's training data. The physics is gymnasium's Humanoid-v5 unchanged (same body,
joints, actuators and options, see ``assets/humanoid_textured.xml``); only the look and
the default camera differ. ``fixed_length=True`` (the paper's setup, and the default)
turns off early termination when the torso leaves the healthy height range, so that an
episode always lasts ``max_episode_steps`` steps: kneeling or falling must be *seen* and
scored by CLIP, not cut short.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
from gymnasium import logger, utils
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv

from ._common import DEFAULT_RENDER_SIZE, check_render_mode, check_size

#: Path of the textured MJCF shipped with the package (works editable and from a wheel).
HUMANOID_XML: str = str(resources.files(__package__).joinpath("assets", "humanoid_textured.xml"))

#: Name of the camera (``mode="trackcom"``) in the textured model used for rendering.
TRACKING_CAMERA = "track"


def render_modes() -> list[str]:
    """The render modes that work in this process: ``"human"`` needs a window (``MUJOCO_GL=glfw``).

    Off-screen back ends (EGL, the default, or OSMesa) cannot open one, and MuJoCo's
    window code then aborts the process; so ``"human"`` is declared only where it works,
    and gymnasium's ``check_env`` (which tries every declared mode) passes.
    """
    import os

    offscreen = ["rgb_array", "depth_array", "rgbd_tuple"]
    return (["human"] if os.environ.get("MUJOCO_GL", "glfw") == "glfw" else []) + offscreen


class TexturedHumanoidEnv(HumanoidEnv):
    """Humanoid-v5 dynamics, observations and reward, rendered in a textured scene.

    Args:
        render_mode: ``"rgb_array"`` (default use), ``"human"`` (with ``MUJOCO_GL=glfw``), ``"depth_array"``,
            ``"rgbd_tuple"`` or ``None``.
        width, height: frame size in pixels; MuJoCo renders directly at this size.
        fixed_length: if true, never terminate early (the humanoid may fall and lie on
            the floor); episodes then end only by truncation after ``max_episode_steps``.
            Conflicts with an explicit ``terminate_when_unhealthy=True``.
        camera_name: camera to render from; defaults to the body-tracking camera.
        xml_file: MJCF model; defaults to the textured model shipped with the package.
        **kwargs: any other argument of gymnasium's ``HumanoidEnv`` (reward weights,
            ``reset_noise_scale``, ``camera_id``, ...).

    ``info`` additionally holds ``torso_height`` (z of the torso, metres; about 1.4 when
    standing), in ``reset`` and ``step``. There is no ``success`` entry: no ground-truth
    predicate exists for goals like "kneeling".
    """

    def __init__(
        self,
        render_mode: str | None = None,
        width: int = DEFAULT_RENDER_SIZE[0],
        height: int = DEFAULT_RENDER_SIZE[1],
        fixed_length: bool = True,
        camera_name: str | None = TRACKING_CAMERA,
        xml_file: str = HUMANOID_XML,
        **kwargs: Any,
    ) -> None:
        modes = render_modes()
        check_render_mode(render_mode, modes)
        width, height = check_size(width, height)
        user_kwargs = dict(kwargs)
        if fixed_length:
            if kwargs.get("terminate_when_unhealthy", False):
                raise ValueError(
                    "fixed_length=True disables early termination; it cannot be combined "
                    "with terminate_when_unhealthy=True (pass fixed_length=False instead)"
                )
            kwargs["terminate_when_unhealthy"] = False
        if kwargs.get("camera_id") is not None:
            camera_name = None  # gymnasium accepts only one of camera_id / camera_name
        super().__init__(
            xml_file=xml_file,
            render_mode=render_mode,
            width=width,
            height=height,
            camera_name=camera_name,
            **kwargs,
        )
        self.fixed_length = fixed_length
        self.metadata = {**self.metadata, "render_modes": modes}
        # HumanoidEnv recorded its own positional arguments for pickling; record ours so
        # that a pickled copy is rebuilt through this class with the same settings.
        utils.EzPickle.__init__(
            self,
            render_mode=render_mode,
            width=width,
            height=height,
            fixed_length=fixed_length,
            camera_name=camera_name,
            xml_file=xml_file,
            **user_kwargs,
        )

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["torso_height"] = float(self.data.qpos[2])
        return obs, reward, terminated, truncated, info

    def _get_reset_info(self) -> dict[str, Any]:
        info = super()._get_reset_info()
        info["torso_height"] = float(self.data.qpos[2])
        return info

    def render(self) -> np.ndarray | tuple[np.ndarray, ...] | None:
        """Render with the tracking camera; RGB frames come back C-contiguous.

        MuJoCo reads pixels bottom-up and gymnasium returns a flipped *view* (negative
        strides), which ``torch.from_numpy`` rejects; one small copy here saves every
        consumer from having to know that.
        """
        if self.render_mode is None:  # as the classic-control envs (gymnasium would raise)
            logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        frame = super().render()
        if isinstance(frame, tuple):  # "rgbd_tuple"
            return tuple(np.ascontiguousarray(part) for part in frame)
        if isinstance(frame, np.ndarray):
            return np.ascontiguousarray(frame)
        return frame
