"""MkDocs hook: the API reference reads the package in its installed layout.

setuptools maps ``envs/``, ``agents/`` and ``configs/`` into the package (``package-dir`` in
pyproject.toml), so ``vlmrm.envs`` has no folder ``vlmrm/envs`` in the repository and griffe,
which reads sources without importing them, would not find it. Before mkdocstrings reads its
settings, this hook builds the layout a wheel installs, as symbolic links in a temporary
folder (the same layout ``.ci/run`` lints), and points the Python handler's ``paths`` at it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority

#: repository folders that the installed package holds as ``vlmrm.<name>``
MAPPED = ("agents", "envs", "configs")


def installed_layout(repo: Path, into: Path) -> Path:
    """``into/vlmrm``: links to every entry of ``repo/vlmrm`` and to the mapped folders."""
    package = into / "vlmrm"
    package.mkdir(parents=True)
    for entry in (repo / "vlmrm").iterdir():
        (package / entry.name).symlink_to(entry.resolve())
    for name in MAPPED:
        (package / name).symlink_to((repo / name).resolve(), target_is_directory=True)
    return into


@event_priority(100)  # before mkdocstrings copies its handler settings
def on_config(config):
    repo = Path(config.config_file_path).resolve().parent
    folder = Path(tempfile.mkdtemp(prefix="vlmrm-api-"))
    atexit.register(shutil.rmtree, folder, True)
    handlers = config.plugins["mkdocstrings"].config["handlers"]
    handlers.setdefault("python", {})["paths"] = [str(installed_layout(repo, folder))]
    return config
