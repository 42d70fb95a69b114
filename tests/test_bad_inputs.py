"""Every command, every kind of file it reads, damaged the ways a user meets it: one line, exit ≠ 0.

The cases come from ``tests/_fault_cases.py`` (truncated, empty, wrong-format and
missing videos, weights, checkpoints, replay buffers, run configs, settings files,
tuning sets, TTA images and annotations; ``out=`` under a regular file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _fault_cases import build_cases, make_inputs, run_case, verdict
from _tta import TINY, make_class_folders

from vlmrm.tta.cli import main as tta_main

_FAKE = {k: Path("/nonexistent") / k for k in
         ("video", "weights", "run", "ranked", "classes", "ann", "images", "yaml", "blocker")}
IDS = [cid for cid, *_ in build_cases(_FAKE, Path("/nonexistent/work"))]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    inputs = make_inputs(work / "inputs")
    return {cid: rest for cid, *rest in build_cases(inputs, work / "cases")}


def test_the_cases_cover_every_kind_and_damage():
    kinds = {cid.rsplit(":", 1)[0] for cid in IDS}
    assert len(IDS) == len(set(IDS)) >= 69 and len(kinds) >= 18
    for damage in ("truncated", "empty", "wrong-format", "missing"):
        assert sum(cid.endswith(f":{damage}") for cid in IDS) >= 15


@pytest.mark.parametrize("cid", IDS)
def test_damaged_input_is_one_line(cases, cid):
    module, argv, prepare = cases[cid]
    rc, err, tb = run_case(module, argv, prepare)
    assert verdict(rc, err, tb) == "pass", (rc, err[-2000:], tb[-2000:])
    if rc == 2:
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
        assert len(lines) == 1, err


# -- TTA results and settings files of an earlier run ----------------------------------------


@pytest.fixture
def tta_run(tmp_path):
    data = make_class_folders(tmp_path / "classes", per_class=1)
    out = tmp_path / "out"
    args = ["task=classify", f"data={data}", f"out={out}", *TINY]
    assert tta_main([*args, "limit=2"]) == 0
    return out, args


@pytest.mark.parametrize("damage", ["binary", "not-records", "config-truncated", "config-binary"])
def test_damaged_tta_results_or_config_is_one_line(tta_run, capsys, damage):
    out, args = tta_run
    results, config = out / "results.jsonl", out / "config.json"
    if damage == "binary":
        results.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00" * 20 + b"\n" + results.read_bytes())
    elif damage == "not-records":
        results.write_text("[1, 2, 3]\n" + results.read_text())
    elif damage == "config-truncated":
        config.write_bytes(config.read_bytes()[:7])
    else:
        config.write_bytes(b"\xff\xfe\x00garbage")
    before = (results.read_bytes(), config.read_bytes())
    capsys.readouterr()
    assert tta_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "resume=false" in err[0], err
    assert (results.read_bytes(), config.read_bytes()) == before  # nothing overwritten
    assert tta_main([*args, "resume=false"]) == 0  # the fix the line names works
    assert len([json.loads(x) for x in results.read_text().splitlines()]) == 3


def test_cut_last_tta_line_is_redone_not_an_error(tta_run, capsys):
    out, args = tta_run
    with (out / "results.jsonl").open("ab") as fh:
        fh.write(b'{"key": "dog/0.png", "pr\xc3')  # cut mid-record, mid-character
    assert tta_main(args) == 0
    keys = [json.loads(x)["key"] for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 3
