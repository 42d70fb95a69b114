"""End-to-end ``python -m vlmrm.tta`` runs on tiny synthetic datasets (vlmrm-tiny, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from _python import run_python
from _tta import CLASSES, TINY, karpathy_split, make_class_folders

from vlmrm.cli.args import parse_settings
from vlmrm.errors import ConfigError
from vlmrm.tta.cli import main
from vlmrm.tta.settings import TTASettings


def parse_config(argv):
    return parse_settings(TTASettings, argv)


@pytest.fixture
def class_folders(tmp_path):
    return make_class_folders(tmp_path / "cls", per_class=2)


@pytest.fixture
def karpathy(tmp_path):
    captions = [[f"photo {i} of a dog", f"thing {i}"] for i in range(4)]
    return karpathy_split(tmp_path, captions, size=(32, 48), ext="jpg")


def _records(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_classify_end_to_end_image_mode(class_folders, tmp_path, capsys):
    mode = "image"
    out = tmp_path / f"out-{mode}"
    assert (
        main(["task=classify", f"data={class_folders}", f"mode={mode}", f"out={out}", *TINY]) == 0
    )
    recs = _records(out)
    assert len(recs) == 6 and {r["key"] for r in recs} == {
        f"{c}/{i}.png" for c in CLASSES for i in range(2)
    }
    assert all(len(r["rewards"]) == 2 and len(r["top5"]) == 3 for r in recs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 6 and 0 <= metrics["top1"] <= 100 and metrics["settings"]["mode"] == mode
    text = capsys.readouterr().out
    assert "zero-shot" in text and "RLCF" in text and "top-1" in text


def test_classify_end_to_end_prompt_mode_batched_and_sequential(class_folders, tmp_path, capsys):
    a, b = tmp_path / "seq", tmp_path / "bat"
    assert (
        main(
            ["task=classify", f"data={class_folders}", f"out={a}", "lr=0.05", "mode=prompt", *TINY]
        )
        == 0
    )
    assert "top-1" in capsys.readouterr().out
    assert (
        main(["task=classify", f"data={class_folders}", f"out={b}", "lr=0.05", "batch_size=4", *TINY])
        == 0
    )
    assert json.loads((b / "metrics.json").read_text())["n"] == 6
    for ra, rb in zip(_records(a), _records(b), strict=True):
        assert (ra["key"], ra["pred"], ra["zeroshot_pred"]) == (
            rb["key"],
            rb["pred"],
            rb["zeroshot_pred"],
        )
        assert ra["rewards"] == pytest.approx(rb["rewards"], abs=1e-4)


def test_resume_skips_finished_samples(class_folders, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["task=classify", f"data={class_folders}", f"out={out}", *TINY]
    assert main([*args, "limit=2"]) == 0
    first = (out / "results.jsonl").read_text().splitlines()
    assert len(first) == 2
    with (out / "results.jsonl").open("a") as f:
        f.write('{"key": "dog/0.png", "pred"')  # a line cut by an interruption
    capsys.readouterr()
    assert main([*args, "limit=4"]) == 0
    assert "2 done, 2 to go" in capsys.readouterr().err
    lines = (out / "results.jsonl").read_text().splitlines()
    assert lines[:2] == first and len(lines) == 4
    assert [json.loads(x)["key"] for x in lines] == [
        "cat/0.png",
        "cat/1.png",
        "dog/0.png",
        "dog/1.png",
    ]
    # Different method settings must not be mixed into the same results file.
    assert main([*args, "steps=5"]) == 2
    assert "different run" in capsys.readouterr().err
    assert main([*args, "limit=1", "resume=false"]) == 0
    assert len(_records(out)) == 1


def test_retrieve_end_to_end(karpathy, tmp_path, capsys, saved_tuned_tiny):
    ann, imgs = karpathy
    _, perturbed = saved_tuned_tiny(0.01, "reward.safetensors")
    common = [
        f"data={ann}",
        f"images={imgs}",
        "model=vlmrm-tiny",
        "reward_model=vlmrm-tiny",
        f"reward_pretrained={perturbed}",
        "progress=false",
        "k=3",
        "steps=2",
    ]
    out = tmp_path / "i2t"
    assert main(["task=retrieve", "direction=i2t", f"out={out}", *common]) == 0
    recs = _records(out)
    assert len(recs) == 4 and recs[0]["targets"] == [0, 1] and len(recs[0]["top10"]) == 8
    m = json.loads((out / "metrics.json").read_text())
    assert {"R@1", "R@5", "R@10", "zeroshot_R@1"} <= set(m) and m["R@10"] == 100.0
    assert "R@1" in capsys.readouterr().out
    batched = tmp_path / "i2t-batched"
    assert main(["task=retrieve", "direction=i2t", f"out={batched}", "batch_size=3", *common]) == 0
    for a, b in zip(recs, _records(batched), strict=True):  # queries adapted 3 at a time
        assert (a["key"], a["rank"], a["zeroshot_rank"], a["top10"]) == (b["key"], b["rank"], b["zeroshot_rank"], b["top10"])
        assert a["rewards"] == pytest.approx(b["rewards"], abs=1e-4)
    out2 = tmp_path / "t2i"
    two_rewards = [
        "reward_model=[vlmrm-tiny,vlmrm-tiny]",
        f"reward_pretrained=[null,{perturbed}]",
        "reward_weights=[5,3]",
    ]
    assert (
        main(
            [
                "task=retrieve",
                "direction=text2image",
                f"out={out2}",
                "limit=3",
                *common,
                *two_rewards,
            ]
        )
        == 0
    )
    recs = _records(out2)
    assert len(recs) == 3 and recs[2]["targets"] == [1] and recs[2]["query"] == "photo 1 of a dog"


def test_cli_errors_are_one_line(class_folders, tmp_path, capsys):
    cases = [
        (["task=classify", "dta=x"], "did you mean 'data'"),
        (["task=classify"], "data=<path> is required"),
        (["task=classify", f"data={tmp_path / 'missing'}"], "does not exist"),
        (["task=sort", "data=x"], "task='sort' is not one of"),
        (["task=classify", "data=x", "steps=many"], "bad value for 'steps'"),
        (["task=classify", "justaword"], "key=value"),
        (["task=classify", f"data={class_folders}", "mode=text", *TINY], "unknown mode"),
        (["task=retrieve", f"data={class_folders}", *TINY], "caption annotation JSON"),
        (
            [
                "task=classify",
                f"data={class_folders}",
                "model=ViT-Nope-99",
                "reward_model=vlmrm-tiny",
                f"out={tmp_path / 'o'}",
            ],
            "unknown CLIP architecture",
        ),
        (["task=classify", "data=x", "model=vlmrm-tiny@w.pt"], "model=vlmrm-tiny pretrained=w.pt"),
        (
            ["task=classify", "data=x", "reward_model=vlmrm-tiny@w.pt"],
            "reward_model=vlmrm-tiny reward_pretrained=w.pt",
        ),
        (
            ["task=classify", "data=x", "reward_model=[a,b]", "reward_pretrained=[w.pt]"],
            "one per reward model",
        ),
        (["task=classify", "data=x", "precision=int8"], "precision='int8' is not one of"),
        (["task=classify", "data=x", "batch_size=0"], "batch_size must be an integer >= 1"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        lines = capsys.readouterr().err.strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0] and message in errors[0], lines
        assert "Traceback" not in "\n".join(lines)


def test_parse_config_defaults_and_lists():
    cfg = parse_config(["data=/x", "reward_model=[vlmrm-tiny,vlmrm-tiny]", "reward_weights=[5,3]"])
    assert (
        cfg.model == "ViT-B-16/openai"
        and cfg.mode == "prompt"
        and cfg.views == 64
        and cfg.select == 0.1
    )
    assert cfg.reward_model == ["vlmrm-tiny", "vlmrm-tiny"] and cfg.reward_weights == [5.0, 3.0]
    assert cfg.reward_models() == [("vlmrm-tiny", None), ("vlmrm-tiny", None)]
    assert (cfg.device, cfg.precision, cfg.batch_size) == ("auto", "auto", 1)
    cfg = parse_config(["data=/x", "reward_model=[A,ViT-L-14]", "reward_pretrained=[null,w.pt]"])
    assert cfg.reward_models() == [("A", None), ("ViT-L-14", "w.pt")]
    with pytest.raises(ConfigError):
        parse_config(["data=/x", "batch_size=0"])
    with pytest.raises(ConfigError, match="unknown setting 'batch'"):
        parse_config(["data=/x", "batch=2"])


def test_help_and_bad_settings_do_not_import_torch():
    code = (
        "import sys\n"
        "from vlmrm.tta.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['task=classify', 'nonsense=1']) == 2\n"
        "assert main(['task=classify', 'data=x', 'mode=text']) == 2\n"
        "assert 'torch' not in sys.modules\n"
    )
    res = run_python(code)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2 and "unknown setting 'nonsense'" in errors[0]


def test_module_entry_point_help():
    res = subprocess.run(
        [sys.executable, "-m", "vlmrm.tta", "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "task=classify" in res.stdout and "views=64" in res.stdout
    for key in ("model=ViT-B-16/openai", "reward_model=ViT-L-14/openai", "reward_pretrained=null",
                "precision=auto", "batch_size=1", "device=auto"):  # fmt: skip
        assert key in res.stdout, key


def test_a_damaged_gallery_cache_is_rebuilt_with_one_warning(karpathy, tmp_path, capsys):
    ann, imgs = karpathy
    out = tmp_path / "i2t"
    argv = ["task=retrieve", f"data={ann}", f"images={imgs}", "model=vlmrm-tiny", "reward_model=vlmrm-tiny",
            "progress=false", "k=3", "steps=1", "limit=2", f"out={out}"]  # fmt: skip
    assert main(argv) == 0
    first = _records(out)
    gallery = out / "gallery.pt"
    sound = torch.load(gallery, weights_only=True)
    data = gallery.read_bytes()
    gallery.write_bytes(data[: len(data) // 2])  # cut short (a copy gone wrong, a full disk)
    capsys.readouterr()
    assert main([*argv, "resume=false"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and f"{gallery} is damaged" in warned[0], err
    assert "Traceback" not in err
    assert [(r["rank"], r["top10"]) for r in _records(out)] == [(r["rank"], r["top10"]) for r in first]
    rebuilt = torch.load(gallery, weights_only=True)  # the same embeddings again
    assert rebuilt["key"] == sound["key"] and torch.equal(rebuilt["policy_image"], sound["policy_image"])
