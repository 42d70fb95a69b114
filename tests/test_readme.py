"""The README is a tested contract: every shell and Python block in it runs here.

Blocks run in README order, in one scratch working directory, the way a new user would
paste them (Python blocks share one namespace, as in a notebook). What a user would bring
is made up front: short videos (``episode.mp4``, ``clip.mp4``, ``a.mp4``, ``b.webm``,
``frames/``), ``labels.csv``, ``run.yaml``, ``hparams.yml``, ``pairs.jsonl`` with images,
``examples/`` (the repository's) and a tuned model for the evaluation examples, which come
before the tuning section (``runs/tune/model.safetensors`` is read from
``runs/tune-before/`` until the tuning block has written it). Then, so that the whole README runs on a CPU in a
couple of minutes, without downloads:

* every ``ViT-.../TAG`` or bare ``ViT-...`` model becomes ``vlmrm-tiny``, and
  ``reward=vit-...`` becomes ``reward=tiny``; a command that would load its default (real)
  model gets ``model=vlmrm-tiny`` (training: ``reward=tiny``);
* step counts become tiny: training runs ``total_steps=32`` on 2 in-process sub-envs with
  16-step episodes, tuning ``steps=2``, rollouts and evaluations one episode;
* ``runs/<run>`` and ``step_<N>`` name the latest training run (of the command's ``env=``)
  and its last checkpoint.

Commands run in this process through the console script's dispatcher
(``vlmrm.cli.main``), so ``python -m vlmrm.X`` and ``vlmrm X`` are checked alike; each
must exit with status 0. Installing (``pip``, ``venv``) and ``python -m pytest`` (this
suite) are not run.

A block that needs what a test machine has not got starts with a visible marker line,
``# needs: weights | a GPU | dataset | minutes | a cluster``. Its commands run unchanged, with an empty
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
import json
import re
import runpy
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: What the error line of a marked block's command must say, by what the block needs.
MISSING = {
    "weights": r"not in the local cache|cannot be downloaded",
    "dataset": r"does not exist|not found|no such file|cannot read|is missing",
    "cluster": r"needs a SLURM cluster \(sbatch not found\)",
}
FAST_S = 60  # a marked command must fail within this many seconds (torch import included)

pytestmark = pytest.mark.timeout(900)


@dataclass
class Block:
    lang: str
    line: int
    text: str
    needs: set[str] = field(default_factory=set)


def readme_blocks(path: Path = README) -> list[Block]:
    """The ``bash`` and ``python`` fenced blocks of the README, with their ``# needs:`` marker."""
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
                blocks.append(Block(lang, start, text, needs))
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


# -- the user's files ----------------------------------------------------------------------


def _make_workspace(root: Path) -> None:
    from vlmrm.runtime.images import save_png
    from vlmrm.video import write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    for name in ("episode.mp4", "clip.mp4", "a.mp4", "b.webm"):
        write_video(root / name, frames, fps=10)
    (root / "frames").mkdir()
    for i, f in enumerate(frames[:4]):
        save_png(root / "frames" / f"{i:03d}.png", f)
    rows = ["video,frame,success"] + [f"{v},{i},{int(i > 2)}" for v in ("a", "b") for i in range(6)]
    rows += [f"frames,{i},{int(i > 1)}" for i in range(4)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "run.yaml").write_text("env: CartPole\nreward: tiny\ngoal: pole vertically upright on top of the cart\n")
    (root / "hparams.yml").write_text(
        "Pendulum-v1:\n  n_timesteps: 20000\n  policy: 'MlpPolicy'\n  learning_rate: !!float 1e-3\n"
        "  noise_type: 'normal'\n  noise_std: 0.1\n  policy_kwargs: \"dict(net_arch=[64, 64])\"\n"
    )
    (root / "images").mkdir()
    captions = ["a red ball left of a blue box", "a dog on the grass", "a blue car right of a tree",
                "two cats on a sofa"]
    with open(root / "pairs.jsonl", "w") as fh:
        for i, caption in enumerate(captions):
            save_png(root / "images" / f"{i}.png", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
            fh.write(json.dumps({"image": f"images/{i}.png", "caption": caption}) + "\n")
    (root / "examples").symlink_to(REPO / "examples")
    # a tuned reward model (the README's tuning section makes one; evaluation uses it earlier)
    import vlmrm

    (root / "runs" / "tune-before").mkdir(parents=True)
    vlmrm.load_clip("vlmrm-tiny", device="cpu").save(root / "runs" / "tune-before" / "model.safetensors")


# -- substitutions -------------------------------------------------------------------------

_MODEL = re.compile(r"ViT-[\w-]+(?:/\w+)?")
_TRAIN_SMALL = ["n_envs=2", "subprocess=false", "env.episode_length=16", "progress=false"]


def _set(tokens: list[str], key: str, value: str, add: bool = True) -> list[str]:
    found = [t for t in tokens if t.startswith(key + "=")]
    if found:
        return [f"{key}={value}" if t.startswith(key + "=") else t for t in tokens]
    return tokens + [f"{key}={value}"] if add else tokens


def _latest_run(root: Path, env: str | None = None) -> Path:
    """The latest training run (of ``env``, when the command names one)."""
    from omegaconf import OmegaConf

    runs = [p.parent.parent for p in (root / "runs").glob("*/checkpoints/latest.json")]
    if env is not None:
        runs = [r for r in runs if env.lower() in (str(OmegaConf.load(r / "config.yaml").env.name).lower(),
                                                   str(OmegaConf.load(r / "config.yaml").env.id).lower())]
    assert runs, f"a README block uses runs/<run> (env {env}) before any block trained one"
    return max(runs, key=lambda p: (p / "checkpoints" / "latest.json").stat().st_mtime)


def tiny(command: str, args: list[str], root: Path) -> list[str]:
    """One command's arguments with tiny models and sizes (see the module docstring)."""
    args = [_MODEL.sub("vlmrm-tiny", re.sub(r"^reward=vit-[\w-]+$", "reward=tiny", a)) for a in args]
    if any("<run>" in a or "<N>" in a for a in args):
        env = next((a.split("=", 1)[1] for a in args if a.startswith("env=")), None)
        run = _latest_run(root, env)
        latest = json.loads((run / "checkpoints" / "latest.json").read_text())
        step = latest.get("checkpoint") or latest["model"].removesuffix(".zip")
        args = [a.replace("runs/<run>", str(run)).replace("step_<N>", step) for a in args]
    if not (root / "runs" / "tune" / "model.safetensors").exists():
        args = [a.replace("runs/tune/model.safetensors", "runs/tune-before/model.safetensors") for a in args]
    if command in ("score", "record", "tune", "tune.build") and "--help" not in args:
        if not any(a.startswith("model=") for a in args):
            args.append("model=vlmrm-tiny")  # their default is a real model
    if command == "train" and "--help" not in args:
        if "-m" in args and any(a.startswith("resume=") for a in args):
            return args  # resuming a sweep: its own settings
        if any(a.startswith("resume=") for a in args):
            return _set(args, "total_steps", "64") + ["progress=false"]
        args = _set(args, "total_steps", "32") + _TRAIN_SMALL
        if not any(a.startswith(("reward=", "reward.model=")) for a in args):
            args.append("reward=tiny")
    elif command in ("evaluate", "record"):
        args = _set(args, "episodes", "1")
        if command == "record":
            args.append("max_steps=16")
    elif command == "tune" and "--help" not in args:
        if "steps=0" not in args:
            args = _set(args, "steps", "2")
        args = _set(args, "warmup_steps", "0", add=False)
    elif command == "tune.rollouts":
        args = _set(_set(args, "episodes", "6"), "size", "64")
    return args


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


def run_block(block: Block, root: Path, namespace: dict, monkeypatch) -> None:
    where = f"README.md line {block.line}"
    if block.lang == "python":
        source = _MODEL.sub("vlmrm-tiny", block.text)
        source = re.sub(r"total_steps=\d+", "total_steps=32", source)
        exec(compile(source, where, "exec"), namespace)
        return
    for tokens in shell_commands(block.text):
        line = " ".join(tokens)
        tokens = _env_prefix(list(tokens), monkeypatch)
        if "pip" in tokens or "venv" in tokens or tokens[:3] == ["python", "-m", "pytest"]:
            continue  # installing, and this test suite itself
        parsed = _vlmrm_command(tokens)
        assert parsed is not None, f"{where}: the README test cannot run {line!r}"
        command, args = parsed
        status, err = _call(command, tiny(command, args, root))
        assert status == 0, f"{where}: {line!r} exited with {status}: {err[-2000:]}"


def check_marked_block(block: Block, monkeypatch, tmp_path: Path) -> None:
    """A ``# needs:`` block: each command fails fast with the line that names what is missing."""
    where = f"README.md line {block.line}"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if "cluster" in block.needs:  # a machine outside a cluster: no sbatch on PATH
        import os
        import shutil

        monkeypatch.setenv("PATH", os.pathsep.join(
            d for d in os.environ.get("PATH", "").split(os.pathsep) if not shutil.which("sbatch", path=d)))
    for tokens in shell_commands(block.text):
        line = " ".join(tokens)
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
            assert parsed is not None, f"{where}: the README test cannot run {line!r}"
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


def test_every_readme_block_runs(tmp_path, monkeypatch):
    blocks = readme_blocks()
    assert len(blocks) > 20 and sum(1 for b in blocks if b.needs) >= 5
    root = tmp_path / "work"
    root.mkdir()
    _make_workspace(root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        if block.needs:
            with monkeypatch.context() as m:
                check_marked_block(block, m, tmp_path)
        else:
            run_block(block, root, namespace, monkeypatch)


def test_a_broken_readme_command_fails_the_test(tmp_path, monkeypatch):
    """The harness itself: a command with a wrong key, or a marked block that does not fail, is caught."""
    (tmp_path / "README.md").write_text(
        "```bash\npython -m vlmrm.train env=CartPole reward=tiny totl_steps=5\n```\n"
        "```bash\n# needs: dataset\npython -m vlmrm.train env=CartPole reward=tiny --cfg job\n```\n"
    )
    bad, marked = readme_blocks(tmp_path / "README.md")
    assert marked.needs == {"dataset"} and not bad.needs
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="exited with 2"):
        run_block(bad, tmp_path, {}, monkeypatch)
    with pytest.raises(AssertionError, match="should fail"):
        check_marked_block(marked, monkeypatch, tmp_path)
