"""Old module paths of moved modules import the new module, with one deprecation warning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from vlmrm.runtime import moved


@pytest.fixture
def an_old_path(monkeypatch):
    """``vlmrm.policy_gradient`` listed under an invented old path."""
    old = "vlmrm.tta.old_policy_gradient_path"
    monkeypatch.setitem(moved.MOVED_MODULES, old, "vlmrm.policy_gradient")
    yield old
    sys.modules.pop(old, None)


def test_an_old_path_is_the_new_module_and_warns_with_the_new_path(an_old_path):
    new = importlib.import_module("vlmrm.policy_gradient")
    with pytest.warns(DeprecationWarning, match=r"moved to vlmrm\.policy_gradient"):
        old = importlib.import_module(an_old_path)
    assert old is new  # the same module object: classes and globals are shared
    assert new.__name__ == "vlmrm.policy_gradient"  # the alias does not rename the module
    assert new.__spec__.name == "vlmrm.policy_gradient" and new.__spec__.origin.endswith("policy_gradient.py")
    from vlmrm.tta.old_policy_gradient_path import reinforce_loss  # noqa: F401  (the from-form)


def test_paths_not_listed_are_not_found_and_the_finder_is_installed_once():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("vlmrm.tta.no_such_module_anywhere")
    moved.install()
    assert sum(isinstance(f, moved.MovedModuleFinder) for f in sys.meta_path) == 1


def test_every_listed_old_path_imports_its_new_module():
    for old, new in moved.MOVED_MODULES.items():
        sys.modules.pop(old, None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        target = importlib.import_module(new)
        if old in moved.MOVED_NAMES:  # a stand-in: the new module's names read through it
            public = [n for n in vars(target) if not n.startswith("_")]
            assert public and all(getattr(module, n) is getattr(target, n) for n in public), old
        else:
            assert module is target, old
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught), old


def test_every_name_that_left_an_old_module_is_found_in_its_new_home():
    for old, homes in moved.MOVED_NAMES.items():
        assert old in moved.MOVED_MODULES, old
        sys.modules.pop(old, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(old)
        for home, names in homes.items():
            for name in names:
                with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {home}\.{name}") as caught:
                    assert getattr(module, name) is getattr(importlib.import_module(home), name)
                assert caught[0].filename == __file__  # the warning points at the line that read the name
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("module", "name", "new"),
    [
        ("vlmrm.tune.trainer", "TuneConfig", "TuneSettings"),
        ("vlmrm.tune.build", "BuildConfig", "BuildSettings"),
    ],
)
def test_settings_classes_keep_their_old_names_where_they_were_imported_from(module, name, new):
    from vlmrm.tune import settings

    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} moved to vlmrm\.tune\.settings"):
        assert getattr(importlib.import_module(module), name) is getattr(settings, new)


def test_import_vlmrm_installs_the_finder_in_a_fresh_interpreter():
    code = "import sys, vlmrm; from vlmrm.runtime.moved import MovedModuleFinder; print(any(isinstance(f, MovedModuleFinder) for f in sys.meta_path))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
