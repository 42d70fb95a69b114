"""Model loading and the image path: reference equivalence, input forms, clear errors."""

from __future__ import annotations

import os
import shutil
import time
import warnings

import numpy as np
import pytest
import torch
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize

import vlmrm
from vlmrm.errors import ConfigError, WeightsNotFoundError

#: Inductor compiles CPU kernels with a C++ compiler; without one, compile=true refuses (tested).
needs_cxx = pytest.mark.skipif(
    not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++")),
    reason="torch.compile on CPU needs a C++ compiler",
)


def _reference_embed(clip: vlmrm.ClipModel, frames: np.ndarray) -> np.ndarray:
    """The reference VLM-RM image path: float frames, torchvision Resize/CenterCrop/Normalize."""
    size = clip.image_size
    transform = Compose(
        [
            lambda x: x.to(torch.float32) / 255.0,
            Resize((size, size), interpolation=InterpolationMode.BICUBIC),
            CenterCrop(size),
            Normalize(mean=clip.mean, std=clip.std),
        ]
    )
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    with torch.no_grad():
        return clip.model.encode_image(transform(x), normalize=True).numpy()


def test_fp32_reproduces_reference_pipeline(tiny_clip, frames):
    ours = tiny_clip.embed_images(frames).numpy()
    np.testing.assert_allclose(ours, _reference_embed(tiny_clip, frames), atol=1e-5)


def test_non_square_frames_are_squashed_by_default(tiny_clip, frames):
    wide = frames[:, :48, :]  # 48×128: aspect ratio 8:3
    np.testing.assert_allclose(
        tiny_clip.embed_images(wide).numpy(), _reference_embed(tiny_clip, np.ascontiguousarray(wide)), atol=1e-5
    )
    crop = tiny_clip.embed_images(wide, resize_mode="center_crop")
    pad = tiny_clip.embed_images(wide, resize_mode="pad")
    assert not torch.allclose(crop, tiny_clip.embed_images(wide))
    assert not torch.allclose(pad, crop)
    # center_crop sees only the middle square: changing the sides changes nothing.
    edited = np.ascontiguousarray(wide).copy()
    edited[:, :, :10] = 0
    torch.testing.assert_close(tiny_clip.embed_images(edited, resize_mode="center_crop"), crop)


def test_input_forms_agree(tiny_clip, frames):
    want = tiny_clip.embed_images(frames)
    chw = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
    torch.testing.assert_close(tiny_clip.embed_images(torch.from_numpy(frames)), want)
    torch.testing.assert_close(tiny_clip.embed_images(chw), want)
    torch.testing.assert_close(tiny_clip.embed_images(torch.from_numpy(chw)), want)
    torch.testing.assert_close(tiny_clip.embed_images(list(frames)), want)
    torch.testing.assert_close(tiny_clip.embed_images(frames[3]), want[3:4])
    torch.testing.assert_close(tiny_clip.embed_images(frames.astype(np.float32) / 255), want, atol=1e-5, rtol=0)
    # chunking does not change results
    torch.testing.assert_close(tiny_clip.embed_images(frames, batch_size=3), want, atol=1e-6, rtol=0)
    assert tiny_clip.embed_images(frames[:0]).shape == (0, want.shape[1])
    norms = want.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 32, 32, 3), np.int32), "uint8"),
        (np.zeros((2, 32, 32), np.uint8), "3 colour channels"),
        (np.zeros((2, 32, 32, 4), np.uint8), "RGBA"),
        (np.zeros((32,), np.uint8), "shape"),
        (np.full((1, 8, 8, 3), np.nan, np.float32), "NaN"),
        (np.full((1, 8, 8, 3), 200.0, np.float32), r"\[0, 1\]"),
        ("frame.png", "NumPy array or torch tensor"),
        (np.zeros((1, 0, 8, 3), np.uint8), "zero height"),
    ],
)
def test_bad_frames_give_clear_errors(tiny_clip, bad, match):
    with pytest.raises(ConfigError, match=match):
        tiny_clip.embed_images(bad)


def test_text_embeddings_are_cached(tiny_clip):
    tiny_clip.clear_text_cache()
    a = tiny_clip.embed_texts(["a robot", "a cart"])
    assert set(tiny_clip._text_cache) == {"a robot", "a cart"}
    calls = []
    original = tiny_clip.model.encode_text
    tiny_clip.model.encode_text = lambda *args, **kw: calls.append(1) or original(*args, **kw)
    try:
        b = tiny_clip.embed_texts(["a cart", "a robot"])
    finally:
        del tiny_clip.model.encode_text
    assert calls == []
    torch.testing.assert_close(b, a.flip(0))


def test_tiny_is_seeded_and_deterministic():
    a = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    torch.manual_seed(123)
    b = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.device.type == "cpu" and a.precision == "fp32"


def test_local_weights_file_roundtrip(saved_tuned_tiny, frames):
    clip, path = saved_tuned_tiny(0.01)
    loaded = vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained=path)
    torch.testing.assert_close(loaded.embed_images(frames), clip.embed_images(frames))
    fresh = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    assert not torch.allclose(fresh.embed_images(frames), clip.embed_images(frames))


def test_weights_file_for_wrong_architecture(tmp_path):
    path = tmp_path / "tiny.safetensors"
    vlmrm.load_clip("vlmrm-tiny", device="cpu").save(path)
    with pytest.raises(ConfigError, match="could not load weights"):
        vlmrm.load_clip("RN50", device="cpu", pretrained=path)


def test_missing_weights_file():
    with pytest.raises(WeightsNotFoundError, match="does not exist") as info:
        vlmrm.load_clip("vlmrm-tiny", device="cpu", pretrained="no/such/file.safetensors")
    assert "saved from a 'vlmrm-tiny' model" in str(info.value) and "{" not in str(info.value)


def test_architecture_alone_warns_random_weights():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        clip = vlmrm.load_clip("RN50", device="cpu")
    assert clip.image_size == 224


def test_unknown_architecture_and_tag():
    with pytest.raises(ConfigError, match="unknown CLIP architecture 'ViT-B-33'.*ViT-B-32"):
        vlmrm.load_clip("ViT-B-33/openai", device="cpu")
    with pytest.raises(ConfigError, match="unknown pretrained tag 'laion9b'.*laion2b_s34b_b79k"):
        vlmrm.load_clip("ViT-B-32/laion9b", device="cpu")


def test_offline_missing_weights_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match=r"ViT-B-32/laion2b_s34b_b79k.*HF_HUB_OFFLINE"):
        vlmrm.load_clip("ViT-B-32/laion2b_s34b_b79k", device="cpu", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    """Without HF_HUB_OFFLINE the hub is probed once, not retried for a minute."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # Port 9 on loopback: nothing listens there, the connection is refused at once.
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="cannot be reached.*local weights file"):
        vlmrm.load_clip("ViT-B-32/openai", device="cpu", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 10


def test_bad_device_and_precision():
    with pytest.raises(ConfigError, match="precision"):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            vlmrm.load_clip("vlmrm-tiny", device="cuda")


def test_reduced_precision_runs_and_stays_close(frames):
    fp32 = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bf16 = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="bf16")
    assert bf16.precision == "bf16"
    a, b = fp32.embed_images(frames), bf16.embed_images(frames)
    assert b.dtype == torch.float32
    cos = (a * b).sum(-1)
    assert float(cos.min()) > 0.99
    assert vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="auto").precision == "fp32"


def test_fast_resize_is_close_to_exact_path(frames):
    exact = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
    fast = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", fast_resize=True)
    assert not exact.fast_resize and fast.fast_resize
    big = np.repeat(np.repeat(frames, 3, axis=1), 3, axis=2)  # 288×384: a real downscale
    a, b = exact.embed_images(big), fast.embed_images(big)
    assert not torch.equal(a, b)  # a different path...
    assert float((a * b).sum(-1).min()) > 0.9999  # ...with the same result to 1e-4
    from scipy.stats import spearmanr

    g = exact.embed_texts(["a humanoid robot kneeling"])[0]
    assert spearmanr((a @ g).numpy(), (b @ g).numpy()).statistic > 0.99


def test_compile_settings_are_checked_before_loading():
    from vlmrm.checks import resolve_compile

    assert [resolve_compile(v) for v in (False, None, "false", "off")] == [None] * 4
    assert [resolve_compile(v) for v in (True, "true", "default")] == ["default"] * 3
    assert resolve_compile("Reduce-Overhead") == "reduce-overhead"
    with pytest.raises(ConfigError, match=r"compile must be true, false or a torch.compile mode \(default, reduce-overhead"):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", compile="fast")


@needs_cxx
def test_compiled_tower_matches_eager_at_every_batch_size(frames):
    from torch._dynamo.utils import counters

    eager = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", compile=True, batch_size=16)
    assert clip.compile == "default"
    many = np.concatenate([frames] * 5)  # 40 frames: chunks of 16, 16 and 8
    graphs = counters["stats"]["unique_graphs"]
    for n in (40, 16, 5, 3, 1):  # batch 1 too: the warm-up compiled its graph
        np.testing.assert_allclose(clip.embed_images(many[:n]).numpy(), eager.embed_images(many[:n]).numpy(), atol=1e-5)
    assert counters["stats"]["unique_graphs"] == graphs  # dynamic batch + batch 1 warmed up: no compiles mid-run
    reward = vlmrm.CLIPReward(clip, goal="a red square", baseline="a square", alpha=0.5)
    ref = vlmrm.CLIPReward(eager, goal="a red square", baseline="a square", alpha=0.5)
    np.testing.assert_allclose(np.asarray(reward(frames)), np.asarray(ref(frames)), atol=1e-6)
    clip.enable_compile(False)
    assert clip.compile is None and clip._compiled_encoder is None
    np.testing.assert_allclose(clip.embed_images(frames).numpy(), eager.embed_images(frames).numpy(), atol=1e-6)


def test_compile_failure_is_one_clear_error(monkeypatch):
    def broken_compile(fn, mode=None, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(long Inductor trace)")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(
        ConfigError,
        match=r"torch.compile of vlmrm-tiny's image tower failed \(RuntimeError: InvalidCxxCompiler: No working C\+\+ compiler found\); "
        r"compiling needs a C\+\+ compiler .*compile=false",
    ):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", compile=True)


def test_open_clip_call_pattern_with_a_tag_is_the_same_as_arch_slash_tag(tmp_path, monkeypatch):
    """load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k") is open_clip's form: a tag, not a file."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"'ViT-B-32/laion2b_s34b_b79k'.*HF_HUB_OFFLINE"):
        vlmrm.load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        vlmrm.load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k.safetensors", device="cpu")


def test_device_auto_is_cuda_when_present_else_cpu():
    from vlmrm.models import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected == resolve_device(None).type
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("gpu0")


def test_gradient_encoders_are_the_inference_encoders_with_autograd(tiny_clip, frames):
    """One encode path: the reward embeddings equal the trainable encoders' output."""
    x = tiny_clip.preprocess(frames)
    img = tiny_clip.image_features(x)
    assert img.requires_grad
    np.testing.assert_allclose(img.detach().numpy(), tiny_clip.embed_images(frames).numpy(), atol=1e-6)
    txt = tiny_clip.text_features(tiny_clip.tokenize(["a pole", "a cart"]))
    assert txt.requires_grad
    np.testing.assert_allclose(txt.detach().numpy(), tiny_clip.embed_texts(["a pole", "a cart"]).numpy(), atol=1e-6)
    np.testing.assert_allclose(torch.linalg.norm(img, dim=-1).detach().numpy(), 1.0, atol=1e-5)
    raw = tiny_clip.image_features(x, normalize=False)
    assert not torch.allclose(torch.linalg.norm(raw, dim=-1), torch.ones(len(frames)))
    # gradients reach the tower's weights
    img.sum().backward()
    assert tiny_clip.model.visual.proj.grad is not None
    tiny_clip.model.zero_grad(set_to_none=True)


def test_gradient_encoders_take_replacement_weights_without_touching_the_model(tiny_clip, frames):
    x = tiny_clip.preprocess(frames[:2])
    before = tiny_clip.model.visual.proj.detach().clone()
    proj = (before * 2.0).requires_grad_(True)
    out = tiny_clip.image_features(x, params={"visual.proj": proj}, normalize=False)
    ref = tiny_clip.image_features(x, normalize=False).detach()
    np.testing.assert_allclose(out.detach().numpy(), 2.0 * ref.numpy(), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert proj.grad is not None and torch.equal(tiny_clip.model.visual.proj, before)
    params = {k: v.detach() + 0.0 for k, v in tiny_clip.model.named_parameters() if k.startswith("transformer.")}
    tokens = tiny_clip.tokenize(["a pole"])
    np.testing.assert_allclose(
        tiny_clip.text_features(tokens, params=params).detach().numpy(),
        tiny_clip.embed_texts(["a pole"]).numpy(),
        atol=1e-6,
    )


def test_training_precision_is_mixed_precision_on_fp32_weights():
    """Tuning and TTA share one mapping of precision= to load_clip arguments."""
    from vlmrm.models import training_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_precision("auto", cpu) == {"precision": "fp32", "amp_dtype": None}
    assert training_precision("fp32", cuda) == {"precision": "fp32", "amp_dtype": None}
    assert training_precision("auto", cuda) == {"precision": "amp", "amp_dtype": None}
    assert training_precision("amp", cpu) == {"precision": "amp", "amp_dtype": None}
    assert training_precision("bf16", cuda) == {"precision": "amp", "amp_dtype": "bf16"}
    assert training_precision("fp16", cuda) == {"precision": "amp", "amp_dtype": "fp16"}
    with pytest.raises(ConfigError, match="precision=fp16 mixed precision needs CUDA"):
        training_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision='int8' is not one of"):
        training_precision("int8", cpu)


def test_amp_dtype_chooses_the_autocast_dtype(frames):
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="amp", amp_dtype="bf16")
    assert clip.autocast_dtype == torch.bfloat16 and next(clip.model.parameters()).dtype == torch.float32
    x = clip.preprocess(frames[:2])
    with torch.no_grad():
        assert clip.model.encode_image(x).dtype == torch.float32
    assert clip.image_features(x).dtype == torch.float32  # returned as float32 after autocast
    assert vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", amp_dtype="bf16").autocast_dtype is None
    with pytest.raises(ConfigError, match="amp_dtype must be"):
        vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="amp", amp_dtype="fp8")
