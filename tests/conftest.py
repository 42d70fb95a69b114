"""Shared fixtures. Everything runs on the CPU with the small seeded `vlmrm-tiny` CLIP."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Tables are read whole by the tests: no terminal width from the runner (pytest-xdist's
# workers export COLUMNS=80, which wraps a sweep's table) reaches the commands under test.
os.environ.pop("COLUMNS", None)
# Converted models and measured CPU choices go to a cache of this run, never the user's
# ~/.cache/vlmrm (nor one another worker of a parallel run is writing).
_CACHE = tempfile.mkdtemp(prefix="vlmrm-test-cache-")
os.environ["VLMRM_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
# A run started in the background by a non-interactive shell (`pytest ... &`, nohup, some
# CI runners) inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored: the tests
# that press Ctrl-C, here and in the commands they start, would see nothing happen. Python's
# own handler here also gives those commands the default disposition (exec resets a handled
# signal, not an ignored one).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# The tests run tiny models: one thread is as fast, and immune to the OpenMP spin-wait
# slow-down (measured 20-40x) when the cores are shared with other work. Subprocesses
# started by the tests inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402, F401  (before any MuJoCo EGL context, see vlmrm/envs)

import vlmrm  # noqa: E402

torch.set_num_threads(1)

try:  # absl's handler (tensorboard and OpenVINO import absl) keeps the stderr it was created with:
    # pytest's capture file. It closes that stream when logging is reconfigured (any
    # logging.config.dictConfig, e.g. submitit's first import) unless the stream is sys.stderr
    # at that moment, which inside a capsys test it is not: pytest then loses its stderr and
    # every later test errors. The real stderr is never closed by absl.
    from absl import logging as _absl_logging

    _absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
except ImportError:
    pass


@pytest.fixture(autouse=True)
def _no_torchrun_job_outlives_its_test():
    """A torchrun test that fails midway must not leave its job running into the next tests."""
    yield
    torchrun_helpers = sys.modules.get("_torchrun")
    if torchrun_helpers is not None:
        torchrun_helpers.kill_started()


@pytest.fixture(scope="session")
def compute_device() -> str:
    """CUDA when this machine has it, else the CPU: tests marked ``cuda`` run on it, so the
    same suite checks the CUDA path on a GPU machine and stays green without one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="session")
def tiny_clip() -> vlmrm.ClipModel:
    return vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32")


@pytest.fixture
def saved_tuned_tiny(tmp_path):
    """``make(scale)`` → a ``vlmrm-tiny`` moved off its seeded weights, and its safetensors file.

    Stands in for a tuned checkpoint: loading the file must give this model, not the seeded one.
    """

    def make(scale: float = 0.01, name: str = "tuned.safetensors"):
        clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
        with torch.no_grad():
            for p in clip.model.parameters():
                p.add_(scale * torch.randn_like(p))
        path = tmp_path / name
        clip.save(path)
        return clip, path

    return make


@pytest.fixture
def frames() -> np.ndarray:
    """Eight varied RGB frames (smooth gradients plus noise), 96×128."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    out = []
    for i in range(8):
        base = np.stack([(xx * (i + 1)) % 256, (yy * (8 - i)) % 256, ((xx + yy) * 2 + 30 * i) % 256], -1)
        noise = rng.integers(0, 40, size=base.shape)
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny models run ~50× slower with 2 threads on a shared, busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
