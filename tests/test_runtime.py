"""The shared runtime: atomic writes under kill -9, the one image conversion, graceful stop, the rollout loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import numpy as np
import pytest

from vlmrm.errors import ConfigError
from vlmrm.rollout import iter_steps
from vlmrm.runtime.atomic import atomic_write, atomic_write_json, atomic_write_lines, temporary_path
from vlmrm.runtime.images import load_image, save_png, to_rgb_uint8
from vlmrm.runtime.stop import GracefulStop


def test_atomic_write_publishes_whole_files_and_keeps_the_old_one_on_error(tmp_path):
    path = tmp_path / "sub" / "results.json"
    atomic_write_json(path, {"step": 1})
    assert path.read_text().strip().endswith("}")

    def broken(tmp):
        tmp.write_text('{"step": 2')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert '"step": 1' in path.read_text()
    assert not temporary_path(path).exists()
    atomic_write_lines(tmp_path / "a.jsonl", ["1", "2"])
    assert (tmp_path / "a.jsonl").read_text() == "1\n2\n"
    assert temporary_path(tmp_path / "model.safetensors").name == "model.tmp.safetensors"


def test_kill_9_in_the_middle_of_a_write_leaves_the_previous_file(tmp_path):
    """A process killed while writing leaves the old complete file, never a half-written one."""
    path = tmp_path / "ckpt.bin"
    path.write_bytes(b"old" * 1000)
    script = textwrap.dedent(
        f"""
        import sys, time
        from vlmrm.runtime.atomic import atomic_write
        def slow(tmp):
            with open(tmp, "wb") as fh:
                fh.write(b"new" * 500)
                fh.flush()
                print("writing", flush=True)
                time.sleep(60)  # held mid-write until the test's SIGKILL; never waited out
                fh.write(b"new" * 500)
        atomic_write({str(path)!r}, slow)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert path.read_bytes() == b"old" * 1000


def test_one_rgb_uint8_conversion_for_every_reader(tmp_path):
    grey16 = np.array([[0, 65535, 32768]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb_uint8(grey16)[0, :, 0], [0, 255, 128])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[[0.5, 0.0, 1.2]]]))[0, 0], [128, 0, 255])
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert to_rgb_uint8(rgba).shape == (2, 2, 3)
    with pytest.raises(ConfigError, match="frame 3: expected an \\(H, W, 3\\)"):
        to_rgb_uint8(np.zeros((2, 2, 5)), "frame 3")
    img = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3)) * 5
    save_png(tmp_path / "x" / "a.png", img)
    np.testing.assert_array_equal(load_image(tmp_path / "x" / "a.png"), img)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="cannot read image .*bad.png"):
        load_image(tmp_path / "bad.png")


def test_graceful_stop_records_the_first_signal_and_aborts_on_the_second():
    with GracefulStop() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.requested and stop.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_rollout_loop_yields_resets_and_steps_with_their_frames():
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    try:
        steps = list(iter_steps(env, lambda obs, info: 0, 2, seed=5, max_steps=7))
        again = list(iter_steps(env, lambda obs, info: 0, 2, seed=5, max_steps=7))
        picked = list(iter_steps(env, lambda obs, info: 1, 1, seed=0, render=lambda ep, t, done: done))
    finally:
        env.close()
    assert [s.t for s in steps if s.episode == 0][0] == 0 and steps[0].is_reset
    for ep in (0, 1):
        ep_steps = [s for s in steps if s.episode == ep]
        assert ep_steps[-1].done and not any(s.done for s in ep_steps[:-1])
        assert len(ep_steps) - 1 <= 7
        assert all(s.frame is not None and s.frame.shape[-1] == 3 for s in ep_steps)
    np.testing.assert_array_equal(np.stack([s.obs for s in steps]), np.stack([s.obs for s in again]))
    assert sum(s.reward for s in steps if s.episode == 0) == len([s for s in steps if s.episode == 0]) - 1
    assert [s.frame is not None for s in picked] == [s.done for s in picked]


def test_signed_integer_pixels_are_8_bit_values():
    np.testing.assert_array_equal(to_rgb_uint8(np.full((1, 1, 3), 200, np.int64))[0, 0], [200, 200, 200])
    with pytest.raises(ConfigError, match="signed integer pixels must lie in"):
        to_rgb_uint8(np.full((1, 1, 3), 300, np.int32))
