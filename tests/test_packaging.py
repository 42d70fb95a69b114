"""The built wheel maps envs/, agents/ and configs/ into the package and ships its data files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (whl,) = out.glob("vlmrm-*.whl")
    return whl


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "vlmrm/__init__.py",
        "vlmrm/model_configs/vlmrm-tiny.json",
        "vlmrm/envs/__init__.py",
        "vlmrm/envs/assets/humanoid_textured.xml",
        "vlmrm/datasets/data/imagenet_classes.tsv",
    ]:
        assert required in names, required
    for mapped in ("envs", "agents", "configs"):
        local = {p.name for p in (ROOT / mapped).glob("*.py")}
        shipped = {Path(n).name for n in names if n.startswith(f"vlmrm/{mapped}/") and n.endswith(".py")}
        assert local <= shipped, f"{mapped}: missing {local - shipped}"
    # every sub-package of vlmrm/ ships whole (setuptools' explicit package list is easy to miss)
    for init in (ROOT / "vlmrm").rglob("__init__.py"):
        folder = init.parent.relative_to(ROOT)
        local = {f"{folder.as_posix()}/{p.name}" for p in init.parent.glob("*.py")}
        assert local <= names, f"{folder}: missing {sorted(local - names)}"
    for yaml in (ROOT / "configs").rglob("*.yaml"):
        assert f"vlmrm/configs/{yaml.relative_to(ROOT / 'configs')}" in names
    # nothing generic at the top level of site-packages
    assert not {n.split("/")[0] for n in names} - {"vlmrm", next(n.split("/")[0] for n in names if ".dist-info" in n)}


def test_wheel_imports_from_its_own_files(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    code = (
        "import vlmrm, vlmrm.envs, gymnasium as gym; "
        "print(vlmrm.__file__); "
        "env = gym.make('vlmrm/CartPole-v0', render_mode='rgb_array', width=64, height=64); env.reset(seed=0); "
        "print(env.render().shape)"
    )
    env = {"PYTHONPATH": str(tmp_path / "site"), "SDL_VIDEODRIVER": "dummy", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0].startswith(str(tmp_path / "site"))
    assert "(64, 64, 3)" in res.stdout.replace("\n", " ")
