"""The README and the manual are a tested contract: every shell and Python block runs here.

The walk reads ``README.md``, then every page of ``docs/`` (sub-folders included) in the
order of the site's navigation (``nav`` in ``mkdocs.yml``; a page missing from it comes
last). Blocks run in that order, in one fresh, empty working directory, the way a new user
would paste them (Python blocks share one namespace, as in a notebook, so a page may use what
the README's quick start made), with no model weights: an empty Hugging Face cache and
``HF_HUB_OFFLINE=1``. Nothing is prepared: the pages make every input they use (record the
clips they score, write the hparams, pairs and settings files) or name files the package
ships. A block that the site shows from the README (``--8<-- "README.md:<section>"``) is
written, and run, once: in the README. Every message names the file and line of its block,
and :func:`test_every_block_is_one_the_walk_can_run` checks each block on its own, with the
file and line as its test id. Models are used as written, so every unmarked block must run
offline (``vlmrm-tiny``, ``reward=tiny``); a command that needs real weights belongs in a
marked block (below). No ``<placeholder>`` may stand in a command: a shell reads
``runs/<run>`` as a redirection.

The quick start runs exactly as written (:func:`test_quick_start_runs_offline_as_written`).
For the rest, so that the whole walk runs on a CPU in a few minutes, the sizes (only they)
become tiny: training runs ``total_steps=32`` on 2 in-process sub-envs with 16-step episodes,
tuning ``steps=2``, evaluations one episode, recordings two of 16 steps.

Commands run in this process through the console script's dispatcher
(``vlmrm.cli.main``), so ``python -m vlmrm.X`` and ``vlmrm X`` are checked alike; each
must exit with status 0. Installing (``pip``, ``venv``) and ``python -m pytest`` (this
suite) are not run.

A block that needs what a test machine has not got starts with a visible marker line,
``# needs: weights | a GPU | dataset | minutes | a cluster``. Its commands (a Python block:
its code) run unchanged, with an empty
Hugging Face cache and ``HF_HUB_OFFLINE=1``, and must fail fast (exit status 2, within
seconds) with the one ``error:`` line that names what is missing: the weights, or the data
(``torchrun`` commands run as one process: without the data they fail the same way);
``--help`` in such a block must answer.
``# needs: minutes`` (benchmarks): each script must answer ``--help``.
``# needs: a cluster`` (SLURM): run without ``sbatch`` on ``PATH``, each command must fail
fast with the one line saying that it needs a SLURM cluster.
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: What the error line of a marked block's command must say, by what the block needs.
MISSING = {
    "weights": r"not in the local cache|cannot be downloaded",
    "dataset": r"does not exist|not found|no such file|cannot read|is missing",
    "cluster": r"needs a SLURM cluster \(sbatch not found\)",
}
FAST_S = 60  # a marked command must fail within this many seconds (torch import included)
#: The blocks of the README and the pages together (62 when the manual was split into pages):
#: fewer means a block was lost on the way.
WALKED_BLOCKS = 62

pytestmark = pytest.mark.timeout(900)


@dataclass
class Block:
    lang: str
    line: int
    text: str
    needs: set[str] = field(default_factory=set)
    file: str = "README.md"

    @property
    def where(self) -> str:
        """``docs/training.md line 42``: what a failure names."""
        return f"{self.file} line {self.line}"


def _shown(path: Path) -> str:
    """A file's name as messages and test ids show it: relative to the repository."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.name


def nav_pages(mkdocs_yml: Path = REPO / "mkdocs.yml") -> list[str]:
    """The pages of ``nav`` in ``mkdocs.yml``, in order (paths under ``docs/``).

    Read line by line rather than with a YAML loader: the file holds MkDocs' own tags
    (``!relative``, ``!!python/name``) that a plain loader refuses.
    """
    lines = mkdocs_yml.read_text().splitlines()
    start = lines.index("nav:") + 1
    pages = []
    for line in lines[start:]:
        if line and not line.startswith((" ", "#")):
            break
        pages += re.findall(r"([\w./-]+\.md)\s*$", line)
    return pages


def doc_files() -> list[Path]:
    """The README, then every page of ``docs/`` in navigation order (unlisted pages last)."""
    listed = [DOCS / page for page in nav_pages()]
    rest = sorted(p for p in DOCS.rglob("*.md") if p not in listed)
    return [README, *[p for p in listed if p.is_file()], *rest]


def doc_blocks() -> list[Block]:
    """Every walked block: the README's, then each page's, in walk order."""
    return [block for path in doc_files() for block in readme_blocks(path)]


def readme_blocks(path: Path = README) -> list[Block]:
    """The ``bash`` and ``python`` fenced blocks of one file, with their ``# needs:`` marker."""
    blocks, lang, start, body = [], None, 0, []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if lang is None:
                lang, start, body = line[3:].strip(), n + 1, []
                continue
            if lang in ("bash", "python"):
                text = "\n".join(body)
                first = body[0] if body else ""
                needs = set()
                if first.startswith("# needs:"):
                    words = first.split(":", 1)[1].lower()
                    needs = {w for w in ("weights", "gpu", "dataset", "minutes", "cluster") if w in words}
                blocks.append(Block(lang, start, text, needs, _shown(path)))
            lang = None
            continue
        if lang is not None:
            body.append(line)
    return blocks


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuations joined, comments dropped, split as the shell does."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens:
            out.append(tokens)
    return out


# -- substitutions -------------------------------------------------------------------------

_TRAIN_SMALL = ["n_envs=2", "subprocess=false", "env.episode_length=16", "progress=false"]


def _set(tokens: list[str], key: str, value: str, add: bool = True) -> list[str]:
    found = [t for t in tokens if t.startswith(key + "=")]
    if found:
        return [f"{key}={value}" if t.startswith(key + "=") else t for t in tokens]
    return tokens + [f"{key}={value}"] if add else tokens


def tiny(command: str, args: list[str]) -> list[str]:
    """One command's arguments with tiny sizes (see the module docstring); models stay as written."""
    if command == "train" and "--help" not in args:
        if "-m" in args and any(a.startswith("resume=") for a in args):
            return args  # resuming a sweep: its own settings
        if any(a.startswith("resume=") for a in args):
            return _set(args, "total_steps", "64") + ["progress=false"]
        return _set(args, "total_steps", "32") + _TRAIN_SMALL
    if command == "evaluate":
        args = _set(args, "episodes", "1")
    elif command == "record":  # two episodes: the README scores both of the quick start's
        args = _set(_set(args, "episodes", "2"), "max_steps", "16")
    elif command == "tune" and "--help" not in args:
        if "steps=0" not in args:
            args = _set(args, "steps", "2")
        args = _set(args, "warmup_steps", "0", add=False)
    elif command == "tune.rollouts":
        args = _set(_set(args, "episodes", "6"), "size", "64")
    return args


_PLACEHOLDER = re.compile(r"<[A-Za-z_][^<>]*>")


def _no_placeholder(where: str, tokens: list[str]) -> None:
    """A ``<name>`` in a command is a shell redirection, not a value to fill in."""
    bad = [t for t in tokens if _PLACEHOLDER.search(t)]
    assert not bad, f"{where}: {' '.join(tokens)!r} holds a placeholder {bad} that a shell reads as a redirection"


def _offline(monkeypatch, root: Path) -> None:
    """No weights: an empty Hugging Face cache that may not be filled from the network."""
    monkeypatch.setenv("HF_HOME", str(root / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# -- running ---------------------------------------------------------------------------------


def _vlmrm_command(tokens: list[str]) -> tuple[str, list[str]] | None:
    """``python -m vlmrm.X args`` / ``vlmrm X args`` / ``torchrun ... -m vlmrm.X args`` → (X, args)."""
    if tokens[0] == "vlmrm":
        return tokens[1], tokens[2:]
    if "-m" in tokens and tokens[0] in ("python", "torchrun"):
        i = tokens.index("-m")
        module = tokens[i + 1]
        if module.startswith("vlmrm."):
            from vlmrm.cli import COMMANDS

            by_module = {m.removesuffix(".cli"): name for name, (m, _) in COMMANDS.items()}
            name = by_module.get(module, module.removeprefix("vlmrm."))
            return name, tokens[i + 2:]
    return None


def _call(command: str, args: list[str]) -> tuple[int, str]:
    from vlmrm.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main([command, *args])
    return status, err.getvalue()


def _env_prefix(tokens: list[str], monkeypatch) -> list[str]:
    while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        monkeypatch.setenv(key, value)
    return tokens


def run_block(block: Block, root: Path, namespace: dict, monkeypatch, as_written: bool = False) -> None:
    """Run an unmarked block; ``as_written``: not even the sizes change."""
    where = block.where
    if block.lang == "python":
        source = block.text if as_written else re.sub(r"total_steps=\d+", "total_steps=32", block.text)
        exec(compile(source, where, "exec"), namespace)
        return
    for tokens in shell_commands(block.text):
        line = " ".join(tokens)
        _no_placeholder(where, tokens)
        tokens = _env_prefix(list(tokens), monkeypatch)
        if "pip" in tokens or "venv" in tokens or tokens[:3] == ["python", "-m", "pytest"]:
            continue  # installing, and this test suite itself
        parsed = _vlmrm_command(tokens)
        assert parsed is not None, f"{where}: the docs test cannot run {line!r}"
        command, args = parsed
        status, err = _call(command, args if as_written else tiny(command, args))
        assert status == 0, f"{where}: {line!r} exited with {status}: {err[-2000:]}"


def check_marked_block(block: Block, monkeypatch, tmp_path: Path) -> None:
    """A ``# needs:`` block: each command fails fast with the line that names what is missing."""
    where = block.where
    _offline(monkeypatch, tmp_path)
    if block.lang == "python":  # its code, unchanged, stops at what is missing
        from vlmrm.errors import VLMRMError

        start = time.perf_counter()
        with pytest.raises(VLMRMError) as failed:
            exec(compile(block.text, where, "exec"), {"__name__": "__readme__"})
        expected = "|".join(MISSING[n] for n in ("weights", "dataset") if n in block.needs)
        assert re.search(expected, str(failed.value), re.IGNORECASE), f"{where}: said {failed.value}"
        assert time.perf_counter() - start < FAST_S, f"{where}: took too long to fail"
        return
    if "cluster" in block.needs:  # a machine outside a cluster: no sbatch on PATH
        import os
        import shutil

        monkeypatch.setenv("PATH", os.pathsep.join(
            d for d in os.environ.get("PATH", "").split(os.pathsep) if not shutil.which("sbatch", path=d)))
    for tokens in shell_commands(block.text):
        line = " ".join(tokens)
        _no_placeholder(where, tokens)
        tokens = _env_prefix(list(tokens), monkeypatch)
        start = time.perf_counter()
        if "minutes" in block.needs:
            script = REPO / tokens[1]
            monkeypatch.setattr(sys, "argv", [str(script), "--help"])
            with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as done:
                runpy.run_path(str(script), run_name="__main__")
            assert done.value.code in (0, None), f"{where}: {script.name} --help failed"
            continue
        if tokens[:2] == ["python", "-c"]:
            from vlmrm.errors import VLMRMError

            with pytest.raises(VLMRMError) as failed:
                exec(tokens[2], {})
            message = str(failed.value)
        else:
            parsed = _vlmrm_command(tokens)
            assert parsed is not None, f"{where}: the docs test cannot run {line!r}"
            status, message = _call(*parsed)
            if "--help" in parsed[1]:
                assert status == 0, f"{where}: {line!r} exited with {status}"
                continue
            assert status == 2, f"{where}: {line!r} should fail (no {block.needs}) but exited {status}"
            lines = message.strip().splitlines()
            assert lines and lines[-1].startswith("error: "), f"{where}: {line!r}: {message[-1000:]}"
            message = lines[-1]
        elapsed = time.perf_counter() - start
        expected = "|".join(MISSING[n] for n in ("weights", "dataset", "cluster") if n in block.needs)
        assert re.search(expected, message, re.IGNORECASE), f"{where}: {line!r} said {message!r}"
        assert elapsed < FAST_S, f"{where}: {line!r} took {elapsed:.0f} s to fail"


def quick_start_blocks(path: Path = README) -> list[Block]:
    """The blocks of the README's "Quick start" section, up to its first subsection."""
    lines = path.read_text().splitlines()
    start = lines.index("## Quick start") + 1
    end = next(n for n in range(start, len(lines)) if lines[n].startswith(("## ", "### ")))
    return [b for b in readme_blocks(path) if start < b.line <= end]


def _run_in_one_folder(blocks: list[Block], tmp_path: Path, monkeypatch, as_written: bool = False) -> Path:
    """Run ``blocks`` in turn, offline, in the empty folder ``tmp_path/work`` and one namespace,
    as a reader following the pages would; marked blocks are checked instead. Returns the folder."""
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    _offline(monkeypatch, tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        if block.needs:
            with monkeypatch.context() as m:
                check_marked_block(block, m, tmp_path)
        else:
            run_block(block, root, namespace, monkeypatch, as_written=as_written)
    return root


def test_quick_start_runs_offline_as_written(tmp_path, monkeypatch):
    """The quick start, exactly as written (sizes included), in an empty folder without weights."""
    blocks = quick_start_blocks()
    assert any(b.lang == "python" and not b.needs for b in blocks)
    assert any(b.lang == "bash" and not b.needs for b in blocks)
    root = _run_in_one_folder(blocks, tmp_path, monkeypatch, as_written=True)
    assert (root / "scores" / "report.html").is_file()
    assert (root / "runs" / "quickstart" / "checkpoints" / "latest.json").is_file()


def test_every_readme_and_docs_block_runs(tmp_path, monkeypatch):
    """The README, then the pages in navigation order, in one folder and one namespace."""
    blocks = doc_blocks()
    assert len(blocks) >= WALKED_BLOCKS and sum(1 for b in blocks if b.needs) >= 20
    assert {b.file for b in blocks} >= {"README.md", "docs/training.md", "docs/tuning.md"}
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _run_in_one_folder(blocks, tmp_path, monkeypatch)


def _bash_readme(folder, *commands: str) -> list:
    """A README.md in ``folder`` with one ``bash`` block per command, read back as blocks."""
    (folder / "README.md").write_text("".join(f"```bash\n{c}\n```\n" for c in commands))
    return readme_blocks(folder / "README.md")


def test_a_broken_readme_command_fails_the_test(tmp_path, monkeypatch):
    """The harness itself: a command with a wrong key, or a marked block that does not fail, is caught."""
    bad, marked = _bash_readme(
        tmp_path,
        "python -m vlmrm.train env=CartPole reward=tiny totl_steps=5",
        "# needs: dataset\npython -m vlmrm.train env=CartPole reward=tiny --cfg job",
    )
    assert marked.needs == {"dataset"} and not bad.needs
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="exited with 2"):
        run_block(bad, tmp_path, {}, monkeypatch)
    with pytest.raises(AssertionError, match="should fail"):
        check_marked_block(marked, monkeypatch, tmp_path)


def test_a_readme_that_needs_weights_or_a_placeholder_fails_the_test(tmp_path, monkeypatch):
    """Unmarked blocks run with the models as written and no weights; ``runs/<run>`` is refused."""
    real, placeholder = _bash_readme(
        tmp_path, "python -m vlmrm.score clip.mp4 goal=x", "python -m vlmrm.evaluate run=runs/<run> episodes=1"
    )
    monkeypatch.chdir(tmp_path)
    _offline(monkeypatch, tmp_path)
    with pytest.raises(AssertionError, match="exited with 2"):  # no clip, no ViT-B-32 weights
        run_block(real, tmp_path, {}, monkeypatch)
    with pytest.raises(AssertionError, match="placeholder"):
        run_block(placeholder, tmp_path, {}, monkeypatch)


@pytest.mark.parametrize("command", ["train", "evaluate", "label", "study"])
def test_help_examples_hold_no_placeholder_a_shell_misreads(command, capsys):
    """``--help`` examples are pasted as they are, like the README's: no ``runs/<run>``."""
    from vlmrm.cli import main

    assert main([command, "--help"]) == 0
    examples = [ln.strip() for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("python -m")]
    assert examples and not [e for e in examples if _PLACEHOLDER.search(e.split("#")[0])], examples


_WALKED = doc_blocks()


@pytest.mark.parametrize("block", _WALKED, ids=[f"{b.file}:{b.line}" for b in _WALKED])
def test_every_block_is_one_the_walk_can_run(block):
    """Each block on its own, without running it: Python that compiles, a marker the walk
    knows, and shell commands that the walk runs (a ``vlmrm`` command, an install line or
    the test command; a benchmark script in a ``# needs: minutes`` block)."""
    from vlmrm.cli import COMMANDS

    first = block.text.splitlines()[0] if block.text else ""
    if first.startswith("# needs:"):
        assert block.needs, f"{block.where}: {first!r} names nothing of weights | a GPU | dataset | minutes | a cluster"
    if block.lang == "python":
        compile(block.text, block.where, "exec")
        return
    commands = shell_commands(block.text)
    assert commands, f"{block.where}: a shell block with no command"
    for tokens in commands:
        _no_placeholder(block.where, tokens)
        tokens = [t for i, t in enumerate(tokens) if not (re.fullmatch(r"[A-Z_]+=\S*", t) and
                                                          all(re.fullmatch(r"[A-Z_]+=\S*", u) for u in tokens[:i]))]
        if "pip" in tokens or "venv" in tokens or tokens[:3] == ["python", "-m", "pytest"]:
            continue
        if "minutes" in block.needs:
            assert tokens[0] == "python" and (REPO / tokens[1]).is_file(), f"{block.where}: {tokens[:2]}"
        elif tokens[:2] == ["python", "-c"]:
            assert block.needs, f"{block.where}: a `python -c` line runs only in a marked block"
        else:
            parsed = _vlmrm_command(tokens)
            assert parsed is not None and parsed[0] in COMMANDS, f"{block.where}: not a vlmrm command: {tokens[:4]}"


def test_the_walk_reads_every_page_once_in_navigation_order():
    """README first, then ``nav``'s pages in order, each file once; no page is left out."""
    files = doc_files()
    assert files[0] == README and len(set(files)) == len(files)
    shown = [_shown(p) for p in files[1:]]
    assert shown[: len(nav_pages())] == [f"docs/{p}" for p in nav_pages()]
    assert set(shown) == {p.relative_to(REPO).as_posix() for p in DOCS.rglob("*.md")}
    blocks = doc_blocks()
    assert len(blocks) >= WALKED_BLOCKS, f"{len(blocks)} blocks, {WALKED_BLOCKS} expected: one was lost"
