"""Damaged, missing and misplaced files as a user meets them, for every command that reads them.

:func:`build_cases` makes good inputs in a folder (a video, weights, a training run, a
tuning set, TTA sets) and returns cases ``(id, command, argv)``, each with one input
damaged: truncated, empty, of the wrong format, missing, or ``out=`` under a regular
file. Every case must end with exit status 2 and one ``error: ...`` line, never a
traceback. ``tests/test_bad_inputs.py`` runs them; ``python tests/_fault_cases.py``
prints a table with counts.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

TINY = ["model=vlmrm-tiny", "device=cpu", "progress=false"]


def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: max(p.stat().st_size // 2, 1)])


def empty(p: Path) -> None:
    p.write_bytes(b"")


def wrong_format(p: Path) -> None:
    p.write_bytes(b"\x89PNG\r\n\x1a\n not what it claims to be \xff\xfe" * 8)


def missing(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()


DAMAGES: dict[str, Callable[[Path], None]] = {
    "truncated": truncate, "empty": empty, "wrong-format": wrong_format, "missing": missing,
}


def _copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return dst


def make_inputs(root: Path) -> dict[str, Path]:
    """Good inputs of every kind, made once."""
    import imageio.v3 as iio

    import vlmrm
    from vlmrm.train import main as train_main
    from vlmrm.video import write_video

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(8, 48, 48, 3), dtype=np.uint8)
    write_video(root / "clip.mp4", frames, fps=4)
    clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
    clip.save(root / "tiny.safetensors")
    assert train_main(["env=CartPole", "reward=ground_truth", "total_steps=40", "checkpoint_every=0",
                       "eval.episodes=0", "agent.learning_starts=10", "progress=false", f"out={root}",
                       "run_name=run"]) == 0
    (root / "img").mkdir()
    for i in range(3):
        iio.imwrite(root / "img" / f"{i}.png", rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8))
    rows = [{"image": str(root / "img" / f"{i}.png"), "captions": ["a red square", "a blue square"]} for i in range(3)]
    (root / "ranked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    classes = root / "classes"
    for c in ("cat", "dog", "bird"):
        (classes / c).mkdir(parents=True)
        for i in range(2):
            iio.imwrite(classes / c / f"{i}.png", rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8))
    entries = [{"filename": f"{i}.png", "split": "test", "sentences": [{"raw": f"picture {i}"}]} for i in range(3)]
    (root / "ann.json").write_text(json.dumps({"images": entries}))
    (root / "train.yaml").write_text("seed: 3\ntotal_steps: 40\n")
    (root / "blocker").write_text("a regular file\n")
    return {
        "video": root / "clip.mp4", "weights": root / "tiny.safetensors", "run": root / "run",
        "ranked": root / "ranked.jsonl", "classes": classes, "ann": root / "ann.json", "images": root / "img",
        "yaml": root / "train.yaml", "blocker": root / "blocker",
    }


def out(target: Path) -> str:
    """``out=`` beside the damaged input (every case writes to its own folder)."""
    return f"out={target.parent / 'out'}"


TTA = ["model=vlmrm-tiny", "reward_model=vlmrm-tiny", "progress=false", "views=4", "steps=1", "device=cpu"]
TUNE = ["model=vlmrm-tiny", "device=cpu", "progress=false", "tensorboard=false", "steps=1", "batch_size=2"]
TRAIN = ["env=CartPole", "reward=tiny", "total_steps=8", "eval.episodes=0", "progress=false"]


def build_cases(inputs: dict[str, Path], work: Path) -> list[tuple[str, str, list[str], Callable[[], None]]]:
    """``(id, command module, argv, damage)``: call ``damage()`` then the command's ``main(argv)``."""
    cases = []
    counter = [0]

    def case(kind: str, damage: str, module: str, make_argv: Callable[[Path], list[str]], src: str,
             inner: str | None = None, name_inner: bool = False) -> None:
        """``name_inner``: the command is given the damaged file itself, not the folder holding it."""
        counter[0] += 1
        tmp = work / f"c{counter[0]:03d}"
        target = tmp / Path(inputs[src]).name
        damaged = target / inner if inner else target

        def prepare() -> None:
            _copy(inputs[src], target)
            DAMAGES[damage](damaged)

        argv = make_argv(damaged if name_inner else target)
        cases.append((f"{module.split('.')[1]}:{kind}:{damage}", module, argv, prepare))

    for d in DAMAGES:
        # videos and weights for scoring
        case("video", d, "vlmrm.score", lambda t: [str(t), "goal=a square", *TINY, out(t)], "video")
        case("weights", d, "vlmrm.score", lambda t: [str(inputs["video"]), "goal=a square", f"pretrained={t}",
                                                     *TINY, out(t)], "weights")
        # training: a run's checkpoint, replay buffer, config; settings from a file; reward weights
        for inner in ("checkpoints/step_000000040/agent.zip", "checkpoints/step_000000040/replay_buffer.pkl",
                      "config.yaml"):
            case(f"run/{inner.rsplit('/', 1)[-1]}", d, "vlmrm.train",
                 lambda t: [f"resume={t}", "total_steps=50", "progress=false"], "run", inner)
            case(f"run/{inner.rsplit('/', 1)[-1]}", d, "vlmrm.evaluate",
                 lambda t: [f"run={t}", "checkpoint=40", "episodes=1", "video=false"], "run", inner)
        case("config-file", d, "vlmrm.train", lambda t: [f"config={t}", *TRAIN, out(t)], "yaml")
        case("weights", d, "vlmrm.train", lambda t: [*TRAIN, f"reward.pretrained={t}", out(t)], "weights")
        case("policy", d, "vlmrm.record", lambda t: ["env=CartPole", f"policy={t}", "episodes=1", *TINY, out(t)],
             "run", "checkpoints/step_000000040/agent.zip", name_inner=True)
        # tuning: the ranked set, an image it names, the starting weights
        case("data", d, "vlmrm.tune.cli", lambda t: [f"data={t}", *TUNE, out(t)], "ranked")
        case("weights", d, "vlmrm.tune.cli", lambda t: [f"data={inputs['ranked']}", f"pretrained={t}", *TUNE, out(t)],
             "weights")
        # TTA: a class folder image, the retrieval annotations, the weights
        if d != "missing":  # one image fewer in a class folder is a smaller data set, not a fault
            case("image", d, "vlmrm.tta.cli", lambda t: ["task=classify", f"data={t}", *TTA, out(t)], "classes",
                 "cat/0.png")
        case("annotations", d, "vlmrm.tta.cli", lambda t: ["task=retrieve", f"data={t}", f"images={inputs['images']}",
                                                        *TTA, out(t)], "ann")
        case("weights", d, "vlmrm.tta.cli", lambda t: ["task=classify", f"data={inputs['classes']}", f"pretrained={t}",
                                                    *TTA, out(t)], "weights")
    # out= under a regular file, for every command that writes
    bad_out = lambda t: f"out={t}/sub"  # noqa: E731
    for module, argv in (
        ("vlmrm.train", TRAIN),
        ("vlmrm.score", [str(inputs["video"]), "goal=a square", *TINY]),
        ("vlmrm.record", ["env=CartPole", "episodes=1", *TINY]),
        ("vlmrm.evaluate", [f"run={inputs['run']}", "episodes=1", "video=false"]),
        ("vlmrm.tune.cli", [f"data={inputs['ranked']}", *TUNE]),
        ("vlmrm.tta.cli", ["task=classify", f"data={inputs['classes']}", *TTA]),
    ):
        cases.append((f"{module.split('.')[1]}:out-under-a-file:-", module, [*argv, bad_out(inputs["blocker"])],
                      lambda: None))
    return cases


def run_case(module: str, argv: list[str], prepare: Callable[[], None]) -> tuple[int | None, str, str]:
    """(exit status or None if an exception escaped, stderr, traceback text)."""
    prepare()
    main = importlib.import_module(module).main
    err = io.StringIO()
    tb = ""
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - what the user would see as a traceback
            rc, tb = None, traceback.format_exc()
    return rc, err.getvalue(), tb


def verdict(rc: int | None, err: str, tb: str) -> str:
    """``pass``: a non-zero exit whose last line says what is wrong; else what went wrong.

    Exit 2 is a bad input that stopped the command (``error: ...``); ``vlmrm.score`` exits
    1 when some videos could not be scored (it goes on with the others and ends with a
    summary line).
    """
    if rc is None or "Traceback" in err:
        return "traceback"
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if rc == 2 and lines and lines[-1].startswith("error: "):
        return "pass"
    if rc == 1 and lines and "Traceback" not in err:
        return "pass"
    return f"rc={rc}"


if __name__ == "__main__":
    import tempfile

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="vlmrm-faults-"))
    inputs = make_inputs(work / "inputs")
    results = {}
    for cid, module, argv, prepare in build_cases(inputs, work / "cases"):
        rc, err, tb = run_case(module, argv, prepare)
        v = verdict(rc, err, tb)
        results[cid] = v
        last = (tb.strip().splitlines() or err.strip().splitlines() or [""])[-1]
        print(f"{v:10s} {cid:45s} {last[:150]}", flush=True)
    counts = {k: sum(v == k for v in results.values()) for k in set(results.values())}
    print(json.dumps({"tried": len(results), **counts}), file=sys.stderr)
