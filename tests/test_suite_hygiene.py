"""The suite's own rules, checked on its sources: no test waits out a long fixed sleep unexplained.

A test that sleeps for a fixed time and hopes that something happened meanwhile is a timing
race: it flakes on a busy machine and slows every run. Wait on the condition instead (a
bounded poll, ≤ 0.5 s a step, with a failure message that says what was waited for). A longer
sleep is allowed where the line, or the line above, says why in a comment (e.g. a child
process held in place until the test kills it).

The check reads the sources with :mod:`ast` and :mod:`tokenize`, not with a regular expression:
it finds ``time.sleep``/``sleep`` calls however ``time`` was imported, also inside the Python
scripts that tests write out and run (string literals), and ignores the word in strings,
comments and names.
"""

from __future__ import annotations

import ast
import io
import operator
import textwrap
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LONGEST_S = 0.5

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow}


def _literal_seconds(node: ast.expr) -> float | None:
    """The value of a literal (``600``, ``1.5``, ``60 * 10``); ``None`` for anything computed."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _literal_seconds(node.operand)
        return None if value is None else (value if isinstance(node.op, ast.UAdd) else -value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _literal_seconds(node.left), _literal_seconds(node.right)
        if left is not None and right is not None:
            try:
                return float(_OPS[type(node.op)](left, right))
            except (ArithmeticError, OverflowError):
                return None
    return None


def _sleep_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to the ``time`` module, and to ``time.sleep`` itself, by this source's imports."""
    modules, functions = {"time"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "time"}
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            functions |= {a.asname or a.name for a in node.names if a.name == "sleep"}
    return modules, functions


def _is_sleep(call: ast.Call, modules: set[str], functions: set[str]) -> bool:
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr == "sleep":
        return isinstance(f.value, ast.Name) and f.value.id in modules
    return isinstance(f, ast.Name) and f.id in functions


def _comment_lines(source: str) -> set[int]:
    """Lines (1-based) that carry a comment token (``#`` inside a string is no comment)."""
    lines = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT and tok.string.lstrip("#").strip():
                lines.add(tok.start[0])
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return lines


def _embedded_script(node: ast.expr) -> tuple[str, int] | None:
    """A string literal that may be a Python script a test writes out and runs: its text and first line.

    An f-string's replacement fields become a placeholder name, so the script still parses.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.Constant) else "_" for v in node.values]
        text = "".join(str(p) for p in parts)
    else:
        return None
    return (text, node.lineno) if "sleep" in text and "\n" in text else None


def long_sleeps(source: str, first_line: int = 1) -> Iterator[tuple[int, float]]:
    """``(line, seconds)`` of each sleep longer than :data:`LONGEST_S` without a comment on its
    line or the line above; also inside the scripts held in string literals."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    modules, functions = _sleep_names(tree)
    comments = _comment_lines(source)
    pieces = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}  # of f-strings
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_sleep(node, modules, functions):
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "secs"), None)
            seconds = None if arg is None else _literal_seconds(arg)
            explained = node.lineno in comments or node.lineno - 1 in comments
            if seconds is not None and seconds > LONGEST_S and not explained:
                yield first_line + node.lineno - 1, seconds
        script = _embedded_script(node) if isinstance(node, ast.expr) and id(node) not in pieces else None
        if script is not None:
            text, line = script
            yield from long_sleeps(textwrap.dedent(text), first_line + line - 1)


def test_no_test_sleeps_long_without_saying_why():
    found = [f"{path.name}:{line}: sleep({seconds:g})"
             for path in sorted(TESTS.glob("*.py")) if path.name != Path(__file__).name  # (its examples below)
             for line, seconds in long_sleeps(path.read_text(encoding="utf-8"))]
    assert not found, (
        f"a sleep longer than {LONGEST_S} s without a comment saying why (wait on the condition in a bounded "
        "poll instead, or say why on the line or the line above): " + "; ".join(found)
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time\ntime.sleep(2)\n", [(2, 2.0)]),
        ("import time\ntime.sleep(secs=60 * 10)\n", [(2, 600.0)]),
        ("import time as t\n\nt.sleep(1.5)\n", [(3, 1.5)]),
        ("from time import sleep as nap\nnap(0.75)\n", [(2, 0.75)]),
        ("import time\n# a comment, two lines up\n\ntime.sleep(3)\n", [(4, 3.0)]),
        ("import time\nx = '# not a comment'; time.sleep(3)\n", [(2, 3.0)]),
        ("import time\ndef f():\n    time.sleep(1.0)\n", [(3, 1.0)]),
        ('SCRIPT = """\nimport time\ntime.sleep(600)\n"""\n', [(3, 600.0)]),  # in a script a test runs
        ('path = 1\nSCRIPT = f"""\nimport time\nopen({path!r})\ntime.sleep(60)\n"""\n', [(5, 60.0)]),
        # not flagged: short, explained on the line or above, computed, not time's sleep, in a plain string
        ("import time\ntime.sleep(0.5)\ntime.sleep(0.05)\n", []),
        ("import time\ntime.sleep(5)  # held until the test kills this process\n", []),
        ("import time\n# the child must still be running when the signal arrives\ntime.sleep(5)\n", []),
        ("import time\ndelay = 3\ntime.sleep(delay)\n", []),
        ("import asyncio\nasyncio.sleep(3)\n", []),
        ("msg = 'time.sleep(600)'\n", []),
    ],
)
def test_the_sleep_check_finds_what_it_should(source, expected):
    assert list(long_sleeps(source)) == expected
