"""CLIP-friendly environments, registered with gymnasium on import.

Ids (all accept ``render_mode="rgb_array"``, ``width`` and ``height``; frames are drawn
directly at that size, 224x224 by default, CLIP's input size):

- ``vlmrm/CartPole-v0``: CartPole-v1 dynamics and reward; ``info["state"]``,
  ``info["success"]`` (pole within 0.1 rad of upright).
- ``vlmrm/MountainCarContinuous-v0``: gymnasium's dynamics, a clean sky/hill/car/flag
  rendering; ``info["state"]``, ``info["success"]`` (car at the flag).
- ``vlmrm/Humanoid-v0``: Humanoid-v5 dynamics in a textured scene with a tracking
  camera; ``fixed_length=True`` by default (no early termination, 100-step episodes as
  in the VLM-RM paper); ``info["torso_height"]``.

``make_env("Humanoid")`` makes one by short name with the defaults in ``ENV_DEFAULTS``.

Import order matters on CPU-only machines: if a MuJoCo EGL context (Mesa, which links its
own LLVM) exists before ``triton`` is imported (torchvision and open_clip import it),
the process segfaults when triton loads. Importing torchvision first is safe, so it is
done here, before anything can create a GL context.
"""

from __future__ import annotations

import os

# Loads triton's LLVM before Mesa's EGL LLVM; the reverse order segfaults (see above).
import torchvision  # noqa: F401, I001

# Headless rendering by default; users may set MUJOCO_GL=osmesa or glfw before import.
os.environ.setdefault("MUJOCO_GL", "egl")

from ._common import DEFAULT_RENDER_SIZE, check_size  # noqa: E402
from .cartpole import CartPoleEnv  # noqa: E402
from .humanoid import HUMANOID_XML, TexturedHumanoidEnv  # noqa: E402
from .mountain_car import MountainCarContinuousEnv  # noqa: E402
from .registry import (  # noqa: E402
    ENV_DEFAULTS,
    EnvDefaults,
    get_env_defaults,
    make_env,
    register_envs,
)

register_envs()

__all__ = [
    "DEFAULT_RENDER_SIZE",
    "ENV_DEFAULTS",
    "HUMANOID_XML",
    "CartPoleEnv",
    "EnvDefaults",
    "MountainCarContinuousEnv",
    "TexturedHumanoidEnv",
    "check_size",
    "get_env_defaults",
    "make_env",
    "register_envs",
]
