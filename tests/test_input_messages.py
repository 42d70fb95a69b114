"""Inputs named for what they are: a symlink loop among the videos to score, and the frames
a wrapper's env renders (the wrapper takes what ``CLIPReward`` takes, refuses the same)."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

import vlmrm
from vlmrm.errors import ConfigError
from vlmrm.runtime.paths import missing_reason
from vlmrm.video import write_video

TINY = ["model=vlmrm-tiny", "device=cpu", "progress=false"]


# -- a symlink loop among the videos to score ------------------------------------------------


def test_missing_reason_tells_loops_broken_links_and_missing_paths_apart(tmp_path):
    os.symlink("b.mp4", tmp_path / "a.mp4")
    os.symlink("a.mp4", tmp_path / "b.mp4")
    os.symlink("self.mp4", tmp_path / "self.mp4")
    os.symlink("gone.mp4", tmp_path / "broken.mp4")
    os.symlink("loopdir", tmp_path / "loopdir")
    (tmp_path / "real.mp4").write_bytes(b"x")
    assert missing_reason(tmp_path / "a.mp4") == "is a symlink loop (a.mp4 -> b.mp4 -> a.mp4)"
    assert missing_reason(tmp_path / "self.mp4") == "is a symlink loop (self.mp4 -> self.mp4)"
    assert missing_reason(tmp_path / "loopdir" / "x.mp4") == "is a symlink loop"  # the loop is a parent
    assert missing_reason(tmp_path / "broken.mp4") == "is a broken symlink (to 'gone.mp4', which does not exist)"
    assert missing_reason(tmp_path / "nothing.mp4") == "does not exist"
    assert missing_reason(tmp_path / "real.mp4") is None


def test_score_names_a_symlink_loop_and_scores_the_other_videos(tmp_path, capsys):
    from vlmrm.score import main

    frames = np.random.default_rng(0).integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "good.mp4", frames, fps=4)
    os.symlink("loop2.mp4", tmp_path / "loop1.mp4")
    os.symlink("loop1.mp4", tmp_path / "loop2.mp4")
    argv = [str(tmp_path / "loop1.mp4"), str(tmp_path / "good.mp4"), "goal=a square", *TINY, f"out={tmp_path / 'out'}"]
    assert main(argv) == 1  # some videos could not be scored
    err = capsys.readouterr().err
    assert f"video '{tmp_path / 'loop1.mp4'}' is a symlink loop (loop1.mp4 -> loop2.mp4 -> loop1.mp4)" in err, err
    assert "does not exist" not in err and "Traceback" not in err, err
    assert (tmp_path / "out" / "scores.csv").is_file()  # the good video was scored


def test_a_weights_file_that_is_a_symlink_loop_is_named_as_one(tmp_path):
    os.symlink("w.safetensors", tmp_path / "w.safetensors")
    with pytest.raises(vlmrm.WeightsNotFoundError, match=r"'.*w\.safetensors' is a symlink loop"):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=tmp_path / "w.safetensors")


# -- the wrapper takes the frames CLIPReward takes -------------------------------------------


class Painted(gym.Env):
    """An env whose render is a fixed array: the frame under test."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.render_mode = "rgb_array"
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}

    def render(self):
        return self.frame


@pytest.fixture(scope="module")
def reward(tiny_clip):
    return vlmrm.CLIPReward(tiny_clip, goal="a red square", baseline="a square", alpha=0.5)


@pytest.fixture(scope="module")
def hwc() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)


def _step_reward(frame, reward) -> float:
    env = vlmrm.CLIPRewardWrapper(Painted(frame), reward)
    env.reset(seed=0)
    return env.step(0)[1]


@pytest.mark.parametrize("form", ["uint8 HWC", "float32 HWC in [0, 1]", "float64 CHW in [0, 1]", "uint8 CHW"])
def test_the_wrapper_accepts_every_frame_clip_reward_accepts(reward, hwc, form):
    frame = {
        "uint8 HWC": hwc,
        "float32 HWC in [0, 1]": hwc.astype(np.float32) / 255,
        "float64 CHW in [0, 1]": hwc.transpose(2, 0, 1).astype(np.float64) / 255,
        "uint8 CHW": np.ascontiguousarray(hwc.transpose(2, 0, 1)),
    }[form]
    expected = float(reward(hwc[None])[0])  # the reference: the uint8 frame as env.render() gives it
    assert float(reward(frame[None])[0]) == pytest.approx(expected, abs=1e-6)
    assert _step_reward(frame, reward) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("form", ["float in [0, 255]", "int32", "RGBA", "NaN"])
def test_the_wrapper_refuses_what_clip_reward_refuses_with_the_same_message(reward, hwc, form):
    frame = {
        "float in [0, 255]": hwc.astype(np.float32),
        "int32": hwc.astype(np.int32),
        "RGBA": np.concatenate([hwc, hwc[..., :1]], axis=-1),
        "NaN": np.full(hwc.shape, np.nan, np.float32),
    }[form]
    with pytest.raises(ConfigError) as direct:
        reward(frame[None])
    with pytest.raises(ConfigError) as wrapped:
        _step_reward(frame, reward)
    assert str(wrapped.value) == str(direct.value), (str(wrapped.value), str(direct.value))


def test_a_render_that_is_not_one_frame_is_named(reward, hwc):
    with pytest.raises(ConfigError, match=r"env.render\(\) must return one frame, \(H, W, 3\) or \(3, H, W\), "
                                          r"got ndarray with shape \(2, 40, 48, 3\)"):
        _step_reward(np.stack([hwc, hwc]), reward)
