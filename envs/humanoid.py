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
#: The keys of ``camera_config`` (see :func:`place_camera`).
CAMERA_KEYS = ("distance", "elevation", "azimuth", "body", "lookat")
#: The VLM-RM reference's view: its model's tracking camera 4 m to the side of the torso,
#: level with it (``pos="0 -4 0"``, looking along +y). The shipped env config uses it.
REFERENCE_CAMERA = {"distance": 4.0, "elevation": 0.0, "azimuth": 90.0, "body": "torso", "lookat": [0.0, 0.0, 0.0]}


def camera_view(model: Any, camera: int) -> dict[str, Any]:
    """A tracking camera's view as :data:`CAMERA_KEYS` (the inverse of :func:`place_camera`).

    ``lookat`` is the point on the view axis closest to the tracked body's origin, relative
    to it, in the initial pose; ``distance`` the camera's distance to that point.
    """
    import mujoco

    body = int(model.cam_bodyid[camera])
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    offset = model.cam_poscom0[camera] + data.subtree_com[body] - data.xpos[body]  # camera - body origin
    forward = -model.cam_mat0[camera].reshape(3, 3)[:, 2]
    distance = float(-offset @ forward)
    return {
        "distance": distance,
        "elevation": float(np.degrees(np.arcsin(np.clip(forward[2], -1.0, 1.0)))),
        "azimuth": float(np.degrees(np.arctan2(forward[1], forward[0]))),
        "body": mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body),
        "lookat": [float(v) for v in offset + distance * forward],
    }


def place_camera(model: Any, camera: int, config: dict[str, Any]) -> dict[str, Any]:
    """Move the tracking camera ``camera`` of ``model`` to the view of ``config``; returns the view.

    ``distance`` (metres from the look-at point), ``elevation`` (degrees; negative looks
    down), ``azimuth`` (degrees around the vertical; 90 looks along +y, the humanoid's
    side) and ``body`` (the body whose centre of mass the camera follows) are MuJoCo's
    free-camera conventions; ``lookat`` is the looked-at point relative to that body's
    origin in the initial pose. Keys left out (or ``None``) keep the camera's current
    value, so a single setting changes only itself. The camera keeps ``trackcom``: it
    moves with the body's centre of mass and never turns.
    """
    import mujoco

    unknown = sorted(set(config) - set(CAMERA_KEYS))
    if unknown:
        raise ValueError(f"camera_config: unknown key(s) {unknown}; use {', '.join(CAMERA_KEYS)}")
    view = camera_view(model, camera)
    view.update({k: v for k, v in config.items() if v is not None})
    distance = float(view["distance"])
    if not np.isfinite(distance) or distance <= 0:
        raise ValueError(f"camera_config.distance must be a positive number of metres, got {view['distance']!r}")
    elevation, azimuth = float(view["elevation"]), float(view["azimuth"])
    if not -90.0 < elevation < 90.0:
        raise ValueError(f"camera_config.elevation must be in (-90, 90) degrees, got {elevation}")
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, str(view["body"]))
    if body < 0:
        raise ValueError(f"camera_config.body {view['body']!r} is no body of the model (e.g. torso, pelvis)")
    lookat = np.asarray(view["lookat"], dtype=np.float64)
    if lookat.shape != (3,):
        raise ValueError(f"camera_config.lookat must be [x, y, z], got {view['lookat']!r}")
    el, az = np.radians(elevation), np.radians(azimuth)
    forward = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(-forward, right)
    model.cam_bodyid[camera] = body
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    position = data.xpos[body] + lookat - distance * forward  # in the initial pose
    model.cam_poscom0[camera] = position - data.subtree_com[body]
    model.cam_mat0[camera] = np.stack([right, up, -forward], axis=1).reshape(-1)
    return view


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
        width: frame width in pixels.
        height: frame height in pixels; MuJoCo renders directly at this size.
        fixed_length: if true, never terminate early (the humanoid may fall and lie on
            the floor); episodes then end only by truncation after ``max_episode_steps``.
            Conflicts with an explicit ``terminate_when_unhealthy=True``.
        camera_name: camera to render from; defaults to the body-tracking camera.
        camera_config: the tracking camera's view, a mapping of ``distance``,
            ``elevation``, ``azimuth``, ``body`` and ``lookat`` (see :func:`place_camera`;
            keys left out keep the model's camera); ``None``: the model's side-front
            camera. The shipped env config sets :data:`REFERENCE_CAMERA`.
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
        camera_config: dict[str, Any] | None = None,
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
        self.camera_config = dict(camera_config) if camera_config else None
        if self.camera_config:
            camera = self.mujoco_renderer.camera_id if camera_name is not None else -1
            if camera is None or camera < 0:
                raise ValueError("camera_config moves a named tracking camera; pass camera_name (e.g. 'track')")
            place_camera(self.model, camera, self.camera_config)
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
            camera_config=self.camera_config,
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
