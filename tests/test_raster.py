"""The NumPy rasteriser of the classic-control envs draws pygame's frames, pixel for pixel.

Each env renders a seeded episode twice, with ``renderer="numpy"`` (the default) and with
``renderer="pygame"`` (the reference), and the frames are compared; the episodes include
states that push shapes across the frame's border (the clipped drawing paths) and
frame sizes other than the default. The largest difference is printed (``-s``).
"""

from __future__ import annotations

import numpy as np
import pytest
from _python import run_python

from vlmrm.envs import make_env


def _max_difference(name: str, actions, steps: int, seed: int, **kwargs) -> tuple[int, int]:
    """Largest per-channel difference and number of differing pixels over an episode."""
    fast = make_env(name, renderer="numpy", **kwargs)
    ref = make_env(name, renderer="pygame", **kwargs)
    worst, differing = 0, 0
    for env in (fast, ref):
        env.reset(seed=seed)
    for t in range(steps):
        action = actions(t)
        for env in (fast, ref):
            _, _, terminated, truncated, _ = env.step(action)
        a, b = fast.render(), ref.render()
        assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
        assert a.flags.c_contiguous and a.flags.writeable
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)
        worst = max(worst, int(diff.max()))
        differing += int((diff > 0).sum())
        if terminated or truncated:
            for env in (fast, ref):
                env.reset(seed=seed + t)
    fast.close()
    ref.close()
    return worst, differing


def _random(seed: int):
    rng = np.random.default_rng(seed)
    return lambda t: int(rng.integers(2))


def _push_left(t: int) -> int:
    return 0  # the cart runs off the frame's left edge before the pole falls


@pytest.mark.parametrize(
    ("actions", "size"),
    [(_random(0), (224, 224)), (_push_left, (224, 224)), (_random(1), (160, 96)), (_random(2), (600, 400))],
    ids=["random-224", "off-frame-224", "random-160x96", "random-600x400"],
)
def test_cartpole_numpy_frames_equal_pygame(actions, size):
    worst, differing = _max_difference(
        "CartPole", actions, steps=120, seed=3, width=size[0], height=size[1]
    )
    print(f"CartPole {size}: max difference {worst} grey levels, {differing} differing pixels")
    assert worst == 0, f"{differing} pixels differ, by up to {worst} grey levels"


def _assert_states_render_alike(name: str, states: list[tuple[str, list[float]]]) -> None:
    """Each ``(label, state)`` set on a numpy- and a pygame-rendered env draws the same frame."""
    fast = make_env(name, renderer="numpy")
    ref = make_env(name, renderer="pygame")
    for env in (fast, ref):
        env.reset(seed=0)
    for label, state in states:
        for env in (fast, ref):
            env.unwrapped.state = np.array(state)
        assert np.array_equal(fast.render(), ref.render()), f"{label}: frames differ"


def test_cartpole_off_frame_states_equal_pygame():
    """Cart and pole far outside, half outside, and on every border (clipped lines)."""
    states = [
        (f"x={x:.2f} theta={theta}", [x, 0.0, theta, 0.0])
        for x in np.linspace(-2.6, 2.6, 27)
        for theta in (-1.4, -0.3, 0.0, 0.2, 1.5, 3.0)
    ]
    _assert_states_render_alike("CartPole", states)


def _random_force(seed: int):
    rng = np.random.default_rng(seed)
    return lambda t: rng.uniform(-1.0, 1.0, size=1).astype(np.float32)


@pytest.mark.parametrize(
    "size", [(224, 224), (200, 120), (600, 400)], ids=["224", "200x120", "600x400"]
)
def test_mountain_car_numpy_frames_equal_pygame(size):
    worst, differing = _max_difference(
        "MountainCar", _random_force(4), steps=60, seed=5, width=size[0], height=size[1]
    )
    print(f"MountainCar {size}: max difference {worst} grey levels, {differing} differing pixels")
    assert worst == 0, f"{differing} pixels differ, by up to {worst} grey levels"


def test_mountain_car_states_along_the_track_equal_pygame():
    """The car everywhere on the hill (every slope), at the flag and at the left wall."""
    states = [(f"position={p:.3f}", [p, 0.0]) for p in np.linspace(-1.2, 0.6, 46)]
    _assert_states_render_alike("MountainCar", states)


def test_renderer_is_checked():
    for name in ("CartPole", "MountainCar"):
        with pytest.raises(ValueError, match=r"renderer must be one of \['numpy', 'pygame'\]"):
            make_env(name, renderer="cairo")


def test_numpy_renderer_does_not_import_pygame():
    code = (
        "import sys; from vlmrm.envs import make_env\n"
        "for name, action in (('CartPole', 0), ('MountainCar', [0.5])):\n"
        "    env = make_env(name); env.reset(seed=0); env.step(action); frame = env.render()\n"
        "    assert frame.shape == (224, 224, 3)\n"
        "print('pygame' in sys.modules)"
    )
    out = run_python(code)
    assert out.stdout.strip() == "False"
