"""The layout of ``vlmrm.tune``: one sub-package per concept, one settings module each, and
every name importable from where it was before the regroup."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import types
import warnings
from pathlib import Path

import pytest

import vlmrm.tune
from vlmrm.runtime.moved import MOVED_MODULES

TUNE = Path(vlmrm.tune.__file__).parent
SUB_PACKAGES = sorted(p.parent.name for p in TUNE.glob("*/__init__.py"))


def test_the_sub_packages_are_the_concepts_of_tuning():
    assert SUB_PACKAGES == ["data", "eval", "finetune", "objectives", "rollouts", "vsr"]


@pytest.mark.parametrize("package", ["", *SUB_PACKAGES])
def test_each_package_says_what_lives_there_and_has_one_settings_module(package):
    folder = TUNE / package
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 20, f"{folder}/__init__.py needs a docstring saying what lives there"
    assert not list(folder.glob("*settings*.py")) or [p.name for p in folder.glob("*settings*.py")] == ["settings.py"]
    settings = folder / "settings.py"
    if settings.is_file():
        tree = ast.parse(settings.read_text(encoding="utf-8"))
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        assert classes and all(c.endswith("Settings") for c in classes), (settings, classes)


def test_no_settings_class_lives_outside_a_settings_module():
    for path in TUNE.rglob("*.py"):
        if path.name == "settings.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith(("Settings", "Config"))]
        assert not found, (path, found)


def test_the_old_settings_names_are_the_new_classes():
    from vlmrm.tune.rollouts.settings import RolloutConfig, RolloutSettings
    from vlmrm.tune.settings import BuildConfig, BuildSettings, TuneConfig, TuneSettings

    assert TuneConfig is TuneSettings and BuildConfig is BuildSettings and RolloutConfig is RolloutSettings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from vlmrm.tune import TuneConfig as face

    assert face is TuneSettings and "TuneConfig" not in vlmrm.tune.__all__


def test_every_old_tune_module_is_listed_and_points_into_the_new_layout():
    old = {k: v for k, v in MOVED_MODULES.items() if k.startswith("vlmrm.tune.")}
    assert len(old) == 19
    for path, new in old.items():
        assert not (TUNE / f"{path.rsplit('.', 1)[1]}.py").exists(), f"{path} still stands beside {new}"
        assert importlib.util.find_spec(new) is not None, new


@pytest.mark.parametrize(
    ("package", "names"),
    [
        # ``vlmrm.tune.vsr`` and ``vlmrm.tune.objectives`` were modules; their names still resolve
        ("vlmrm.tune.vsr", ("load_vsr", "ImageCache", "load_image_captions")),
        ("vlmrm.tune.objectives", ("Objective", "eval_loss", "pairwise_loss")),
        ("vlmrm.tune.data", ("RankedSet", "load_vsr", "ImageCache", "PAIR_MODES", "AUGMENTATIONS", "build_ranked_sets")),
        # the commands that became packages: their main and COMMAND, as ``vlmrm.cli`` loads them
        ("vlmrm.tune.eval", ("main", "COMMAND", "EvalSettings")),
        ("vlmrm.tune.finetune", ("main", "COMMAND", "FinetuneSettings")),
        ("vlmrm.tune.rollouts", ("main", "COMMAND", "RolloutSettings")),
    ],
)
def test_names_of_paths_that_became_packages_resolve_without_a_warning(package, names):
    module = importlib.import_module(package)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in names:
            obj = getattr(module, name)
            assert not isinstance(obj, types.ModuleType), (package, name)
            if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
                assert obj.__name__ == name or name == "main", (package, name, obj)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018
