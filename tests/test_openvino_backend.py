"""The OpenVINO backend of the CPU towers (``load_clip(..., backend="openvino")``).

References are independent of the backend: torch's own fp32 towers of the same weights,
and SciPy's Spearman correlation of rewards.
"""

from __future__ import annotations

import builtins
import json
import sys
import time

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import vlmrm
from vlmrm.errors import ConfigError

ov = pytest.importorskip("openvino")
from vlmrm import openvino_backend  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """One cache folder for the module: later tests reuse what earlier ones converted."""
    path = tmp_path_factory.mktemp("vlmrm-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLMRM_CACHE", str(path))
        yield path


def drawn_frames(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random scenes (frames that differ the way rendered ones do)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 256, (n, 3, 6, 6), generator=gen, dtype=torch.uint8).float()
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_fp32_equals_torch_on_the_tiny_model(cache) -> None:
    ref = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", backend="openvino")
    assert clip.backend == "openvino" and ref.backend == "torch"
    frames = drawn_frames(12, 80, seed=0)
    np.testing.assert_allclose(clip.embed_images(frames), ref.embed_images(frames), atol=1e-4, rtol=0)
    prompts = ["a pole standing upright", "a cart"]
    np.testing.assert_allclose(clip.embed_texts(prompts), ref.embed_texts(prompts), atol=1e-4, rtol=0)
    # the reward head above the tower is shared: the same rewards
    r_ov = vlmrm.CLIPReward(clip, goal="a pole standing upright", baseline="a cart", alpha=0.5)
    r_ref = vlmrm.CLIPReward(ref, goal="a pole standing upright", baseline="a cart", alpha=0.5)
    np.testing.assert_allclose(r_ov(frames), r_ref(frames), atol=1e-4, rtol=0)


# Converting ViT-B-32 costs 12 s on 2 cores at load average ~5 (21 s in a busier minute).
def test_fp32_equals_torch_on_vit_b_32_random_weights(cache) -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        ref = vlmrm.load_clip("ViT-B-32", device="cpu", precision="fp32")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        clip = vlmrm.load_clip("ViT-B-32", device="cpu", precision="fp32", backend="openvino")
    frames = drawn_frames(4, 224, seed=1)
    np.testing.assert_allclose(clip.embed_images(frames), ref.embed_images(frames), atol=1e-4, rtol=0)


def test_int8_keeps_the_ranking_of_drawn_frames(cache) -> None:
    ref = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", fast_resize=True)
    clip = vlmrm.load_clip(
        "vlmrm-tiny", device="cpu", precision="int8", backend="openvino",
        calibration=drawn_frames(64, 96, seed=2),
    )  # fmt: skip
    assert clip.precision == "int8" and isinstance(clip._image_engine, openvino_backend.OpenVINOTower)
    frames = drawn_frames(96, 96, seed=3)  # other frames than the calibration's
    kw = {"goal": "a pole standing upright", "baseline": "a pole", "alpha": 0.5}
    fast, exact = vlmrm.CLIPReward(clip, **kw)(frames), vlmrm.CLIPReward(ref, **kw)(frames)
    assert spearmanr(fast, exact).statistic >= 0.999
    assert np.abs(fast - exact).max() < 0.1 * (exact.max() - exact.min())
    assert not np.allclose(fast, exact, atol=1e-7, rtol=0)  # it is quantised


def test_int8_without_calibration_calibrates_on_the_first_frames_it_embeds(cache, monkeypatch) -> None:
    monkeypatch.setenv("VLMRM_CACHE", str(cache / "lazy"))
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="int8", backend="openvino")
    engine = clip._image_engine
    assert isinstance(engine, openvino_backend.LazyInt8Tower)
    before = openvino_backend.counters["quantize"]
    frames = drawn_frames(openvino_backend.CALIBRATION_FRAMES, 64, seed=4)
    ref = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", fast_resize=True)
    # the calibrating call itself runs in fp32
    np.testing.assert_allclose(clip.embed_images(frames), ref.embed_images(frames), atol=1e-4, rtol=0)
    assert engine.int8 is not None and openvino_backend.counters["quantize"] == before + 1


def test_the_cache_is_reused_and_a_truncated_file_is_rebuilt_with_a_warning(cache) -> None:
    vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", backend="openvino")  # filled
    converted = openvino_backend.counters["convert"]
    start = time.perf_counter()
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", backend="openvino")
    assert openvino_backend.counters["convert"] == converted  # no re-conversion
    assert time.perf_counter() - start < 30
    frames = drawn_frames(3, 64, seed=5)
    expected = clip.embed_images(frames)
    (image_bin,) = (cache / "openvino").glob("vlmrm-tiny-image*-fp32-*.bin")
    data = image_bin.read_bytes()
    image_bin.write_bytes(data[: len(data) // 2])  # a file cut short (a disk that filled up)
    with pytest.warns(vlmrm.VLMRMWarning, match="damaged.*rebuilding") as record:
        clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", backend="openvino")
    assert len([w for w in record if "damaged" in str(w.message)]) == 1
    assert openvino_backend.counters["convert"] == converted + 1  # the image tower only
    assert image_bin.stat().st_size == len(data)
    np.testing.assert_allclose(clip.embed_images(frames), expected, atol=1e-6, rtol=0)


def test_a_write_killed_before_its_manifest_leaves_no_entry(cache, monkeypatch) -> None:
    monkeypatch.setenv("VLMRM_CACHE", str(cache / "killed"))

    def killed(path, meta):
        raise KeyboardInterrupt

    monkeypatch.setattr(openvino_backend, "atomic_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", backend="openvino")
    monkeypatch.undo()
    monkeypatch.setenv("VLMRM_CACHE", str(cache / "killed"))
    converted = openvino_backend.counters["convert"]
    vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", backend="openvino")
    assert openvino_backend.counters["convert"] == converted + 1  # the image tower, no warning


def _without_openvino(monkeypatch) -> None:
    """Make ``import openvino`` fail as it does where the extra is not installed."""
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    monkeypatch.setattr(builtins, "__import__", blocked)


def test_without_the_extra_one_line_names_it(monkeypatch) -> None:
    _without_openvino(monkeypatch)
    with pytest.raises(ConfigError) as info:
        vlmrm.load_clip("vlmrm-tiny", device="cpu", backend="openvino")
    message = str(info.value)
    assert "\n" not in message and 'pip install "vlmrm[openvino]"' in message


def test_the_command_line_says_the_same_in_one_line(monkeypatch, capsys, tmp_path) -> None:
    from vlmrm.score import main

    _without_openvino(monkeypatch)
    video = tmp_path / "frames"
    video.mkdir()
    status = main([str(video), "goal=a cat", "model=vlmrm-tiny", "device=cpu", "backend=openvino",
                   f"out={tmp_path / 'out'}", "progress=false"])  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert status == 2
    assert err == ['error: backend=\'openvino\' needs the openvino extra (openvino is not installed): '
                   'pip install "vlmrm[openvino]"'] or (len(err) == 1 and "vlmrm[openvino]" in err[0])


def test_bad_backend_and_training_commands_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'onnx'"):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", backend="onnx")
    with pytest.raises(ConfigError, match="fp32' or 'int8"):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", backend="openvino", precision="bf16")
    from vlmrm.checks import TRAIN_PRECISIONS
    from vlmrm.cli.vocabulary import ClipSettings

    settings = ClipSettings(model="vlmrm-tiny", backend="openvino")
    settings.check_clip()  # scoring: fine
    with pytest.raises(ConfigError, match="backend=torch"):
        settings.check_clip(TRAIN_PRECISIONS)


def test_gradients_through_an_openvino_tower_are_refused(cache) -> None:
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", backend="openvino")
    x = clip.preprocess(drawn_frames(2, 64, seed=6))
    with pytest.raises(ConfigError, match="embeddings only"):
        clip.image_features(x)


def test_precision_auto_measures_once_picks_a_faithful_path_and_says_which(cache, monkeypatch, capsys) -> None:
    from vlmrm import cpu_choice

    monkeypatch.setenv("VLMRM_CACHE", str(cache / "auto"))
    # vlmrm-tiny is below the size worth measuring: torch fp32, no measurement
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    assert (clip.backend, clip.precision) == ("torch", "fp32")
    assert "precision=auto" not in capsys.readouterr().err
    measured = []
    real = cpu_choice._measure
    monkeypatch.setattr(cpu_choice, "MIN_TOWER_PARAMS", 0)
    monkeypatch.setattr(cpu_choice, "_measure", lambda *a: measured.append(1) or real(*a))
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    line = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("precision=auto: ")][-1]
    cached = json.loads(cpu_choice.choice_file().read_text())
    (entry,) = cached.values()
    assert set(entry["fps"]) == {"torch fp32", "torch int8", "openvino fp32", "openvino int8"}
    picked = f"{clip.backend} {clip.precision}"
    assert line.startswith(f"precision=auto: {picked} for vlmrm-tiny on this CPU")
    # the fastest path among those that keep the ranking
    faithful = {k: v for k, v in entry["fps"].items() if entry["spearman"].get(k, 1.0) >= 0.999}
    assert picked == max(faithful, key=faithful.get)
    again = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    assert measured == [1] and f"{again.backend} {again.precision}" == picked  # cached
    # an explicit backend limits the candidates (and is a new measurement)
    ov_only = vlmrm.load_clip("vlmrm-tiny", device="cpu", backend="openvino")
    assert ov_only.backend == "openvino" and measured == [1, 1]


def test_a_signal_after_an_openvino_model_is_freed_still_stops_gracefully(tmp_path) -> None:
    """Ctrl-C / SIGUSR2 after a model was freed (precision="auto" measures and frees some):
    each freed ``openvino.Core`` unloaded the CPU plugin with its signal stack, and the next
    signal crashed the process with SIGSEGV instead of reaching the graceful stop."""
    import subprocess

    script = (
        "import gc, os, signal, numpy as np, vlmrm\n"
        "from vlmrm.runtime.stop import GracefulStop\n"
        "clip = vlmrm.load_clip('vlmrm-tiny', device='cpu', backend='openvino', precision='fp32')\n"
        "clip.embed_images(np.zeros((2, 64, 64, 3), np.uint8)); clip.embed_texts(['a cart'])\n"
        "del clip; gc.collect()\n"
        "with GracefulStop() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGUSR2)\n"
        "    print('stopped by', stop.name)\n"
    )
    env = {**__import__("os").environ, "VLMRM_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "stopped by SIGUSR2" in done.stdout
