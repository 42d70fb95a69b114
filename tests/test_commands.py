"""Every command answers --help and refuses a bad setting before torch is imported.

Each case runs in a fresh interpreter (this test process has torch loaded already) and
checks ``sys.modules`` afterwards: a command that imports torch, gymnasium or SB3 at
module level spends seconds before it can say "unknown setting".
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from vlmrm.cli import COMMANDS

HEAVY = ("torch", "stable_baselines3", "gymnasium", "scipy", "open_clip")

#: module of each ``python -m`` command, and one bad setting for it
ENTRY_POINTS = {
    "vlmrm.train": "reward.alpha=2",
    "vlmrm.evaluate": "episodes=0",
    "vlmrm.score": "alpha=[0,2]",
    "vlmrm.record": "episodes=zero",
    "vlmrm.tta": "task=draw",
    "vlmrm.caption.train": "mode=clipcup",
    "vlmrm.caption.rerank": "n=0",
    "vlmrm.tune": "loss=magic",
    "vlmrm.tune.build": "threshold=high",
    "vlmrm.tune.rollouts": "episodes=-1",
    "vlmrm.tune.finetune": "stage=magic",
    "vlmrm.tune.vsr_pairs": "false_rows=maybe",
    "vlmrm.tune.eval": "per_relation=maybe",
    "vlmrm.label": "sample=everything",
    "vlmrm.label.agreement": "alpha=2",
    "vlmrm.study": "reps=3",
}


def _run(module: str, argvs: list[list[str]]) -> list[dict]:
    """Run ``python -m module`` once per argv, all in one fresh interpreter; what each did."""
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, runpy, sys
        results = []
        for argv in {argvs!r}:
            out, err = io.StringIO(), io.StringIO()
            sys.argv = [{module!r}] + argv
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
                    code = 0
                except SystemExit as exc:
                    code = exc.code
            heavy = [m for m in {HEAVY!r} if m in sys.modules]
            results.append({{"code": code, "out": out.getvalue(), "err": err.getvalue(), "heavy": heavy}})
        print(json.dumps(results))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_console_command_is_a_python_m_module_tested_here():
    python_m = {module.removesuffix(".cli") for module, _ in COMMANDS.values()}
    assert python_m == set(ENTRY_POINTS)


def test_console_script_dispatches_to_the_same_main(capsys):
    from vlmrm.cli import main

    assert main(["--help"]) == 0 and "tune.build" in capsys.readouterr().out
    assert main(["tune", "--help"]) == 0 and "reinforce_reward" in capsys.readouterr().out
    assert main(["tta", "--help"]) == 0 and "reward_model" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_and_bad_setting_answer_before_torch_is_imported(module):
    shown, bad, unknown = _run(module, [["--help"], [ENTRY_POINTS[module]], ["nonsense_key=1"]])
    assert shown["code"] in (0, None), shown
    assert shown["out"].startswith("usage:") and "key=value" in shown["out"], shown["out"][:300]
    assert shown["heavy"] == [], f"--help imported {shown['heavy']}"

    assert bad["code"] == 2, bad
    lines = bad["err"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), bad["err"]
    assert bad["heavy"] == [], f"a bad setting imported {bad['heavy']}"

    assert unknown["code"] == 2 and "nonsense_key" in unknown["err"], unknown
    assert unknown["heavy"] == []


def test_package_face_is_light():
    code = (
        "import vlmrm, vlmrm.models, sys; "
        "print([m for m in ('stable_baselines3', 'gymnasium', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


@pytest.mark.parametrize(
    "package",
    ["vlmrm", "vlmrm.agents", "vlmrm.scoring", "vlmrm.tta", "vlmrm.tune", "vlmrm.caption", "vlmrm.datasets"],
)
def test_every_public_name_resolves(package):
    """Each public name is the object its home module defines under that name (a class or
    function named so, or a constant), importable with ``from package import *`` too."""
    import importlib
    import inspect
    import types

    module = importlib.import_module(package)
    star: dict = {}
    exec(f"from {package} import *", star)
    for name in module.__all__:
        obj = getattr(module, name)
        assert name in dir(module) and star[name] is obj, name
        assert not isinstance(obj, types.ModuleType), f"{package}.{name} is a module"
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__name__ == name, (name, obj)
            home = importlib.import_module(obj.__module__)
            assert obj.__module__.startswith("vlmrm") and getattr(home, name) is obj, (name, obj.__module__)
        else:
            assert isinstance(obj, dict | frozenset | tuple | list | str | int | float) and obj, (name, obj)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018
