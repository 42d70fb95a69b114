"""A prompt longer than the text tower's context: one warning, when it is encoded, with the
prompt, its token count and the context length — through the API, score and train."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import vlmrm
from vlmrm.errors import LongPromptWarning, VLMRMWarning

#: a 400-word goal (far past CLIP's 77 tokens)
LONG = " ".join(f"a humanoid robot kneeling on floor {i} with" for i in range(50))


def reference_count(clip: vlmrm.ClipModel, text: str) -> int:
    """Tokens of ``text`` with start and end, from the tokenizer given room for all of them."""
    return int((clip.tokenizer([text], context_length=4096) != 0).sum())


def long_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, LongPromptWarning)]


@pytest.fixture
def clip() -> vlmrm.ClipModel:
    return vlmrm.load_clip("vlmrm-tiny", device="cpu")  # its own: warnings are once per model


def test_a_400_word_goal_warns_once_with_its_token_count(clip):
    assert len(LONG.split()) == 400 and clip.context_length == 77 == clip.tokenizer.context_length
    n = reference_count(clip, LONG)
    assert n > 400
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        reward = vlmrm.CLIPReward(clip, goal=LONG, baseline="a humanoid robot", alpha=0.5)
        reward(np.zeros((3, 32, 32, 3), np.uint8))
        clip.embed_texts([LONG, "a humanoid robot"])  # cached, and warned already
        clip.tokenize([LONG])  # the encoder with gradients (tuning, TTA) goes through here too
        vlmrm.CLIPReward(clip, goal=LONG)
    got = long_warnings(record)
    assert len(got) == 1, got
    assert f"has {n} tokens, more than the 77 (start and end tokens included)" in got[0], got[0]
    assert "'a humanoid robot kneeling on floor 0" in got[0] and "vlmrm-tiny" in got[0]
    assert len(got[0]) < 300  # the prompt is abbreviated
    # attributed to the caller's line, so Python shows where the prompt came from
    first = next(w for w in record if issubclass(w.category, LongPromptWarning))
    assert first.filename == __file__


def test_prompts_within_the_context_do_not_warn(clip):
    fits = " ".join(["a"] * 75)  # 75 words of one token each, + start and end = 77
    over = fits + " a"
    assert reference_count(clip, fits) == 77 and reference_count(clip, over) == 78
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clip.embed_texts(["a humanoid robot kneeling", fits])
    assert long_warnings(record) == []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clip.embed_texts([over])
    assert len(long_warnings(record)) == 1 and "has 78 tokens" in long_warnings(record)[0]


def test_the_warning_can_be_filtered_like_any_other(clip):
    assert issubclass(LongPromptWarning, VLMRMWarning) and issubclass(VLMRMWarning, UserWarning)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=vlmrm.VLMRMWarning)
        clip.embed_texts([LONG])
    assert record == []


def _warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "tokens, more than the 77" in line]


def test_score_shows_one_readable_line(tmp_path, capsys):
    from vlmrm.score import main
    from vlmrm.video import write_video

    frames = np.random.default_rng(0).integers(0, 255, size=(6, 32, 32, 3), dtype=np.uint8)
    for name in ("a.mp4", "b.mp4"):  # two videos, several batches: still one line
        write_video(tmp_path / name, frames, fps=4)
    argv = [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), f"goal={LONG}", "baseline=a humanoid robot",
            "alpha=[0,0.5,1]", "batch_size=2", "model=vlmrm-tiny", "device=cpu", "progress=false",
            f"out={tmp_path / 'out'}"]
    assert main(argv) == 0
    lines = _warning_lines(capsys.readouterr().err)
    n = reference_count(vlmrm.load_clip("vlmrm-tiny", device="cpu"), LONG)
    assert len(lines) == 1 and lines[0].startswith("warning: prompt 'a humanoid robot kneeling"), lines
    assert f"has {n} tokens" in lines[0]


def test_train_shows_one_readable_line(tmp_path, capsys):
    from vlmrm.train import main

    argv = ["env=CartPole", "reward=tiny", f"goal={LONG}", "total_steps=24", "n_envs=2", "eval.episodes=0",
            "agent.learning_starts=8", "progress=false", f"out={tmp_path}"]
    assert main(argv) == 0
    lines = _warning_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("warning: prompt '"), lines


def test_many_long_prompts_are_reported_five_times_then_once_in_all(clip):
    prompts = [f"{i} {LONG}" for i in range(9)]  # e.g. a caption data set of long captions
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clip.embed_texts(prompts[:3])
        clip.embed_texts(prompts[3:])
        clip.tokenize(prompts)
    got = long_warnings(record)
    assert len(got) == 6, got
    assert all(got[i].startswith(f"prompt '{i} a humanoid robot") for i in range(5)), got
    assert got[5].startswith("more prompts are longer than the 77 tokens the text tower of vlmrm-tiny reads")
