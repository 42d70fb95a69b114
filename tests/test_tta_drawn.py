"""RLCF on drawn images (coloured squares named by their colour, not noise): with a reward
CLIP that knows the colours (``vlmrm-tiny`` fine-tuned here in seconds), adapting an
untrained policy raises accuracy far above its zero-shot; and the passes through the
policy and reward towers per image are exactly what the method prescribes."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest
from _captions import PLACES, SHAPES, draw

import vlmrm
from vlmrm.tta import ClassificationTTA, CLIPFeedback
from vlmrm.tta.cli import main
from vlmrm.tune.finetune.run import finetune

NAMES = ("red", "green", "blue", "yellow", "white")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drawn")
    (root / "train").mkdir()
    rows = []
    for c in NAMES:
        for s in SHAPES:
            for p in PLACES:
                iio.imwrite(root / "train" / f"{c}-{s}-{p}.png", draw(c, s, p))
                rows.append({"image": f"train/{c}-{s}-{p}.png", "caption": f"a photo of a {c}."})
        (root / "cls" / c).mkdir(parents=True)
        iio.imwrite(root / "cls" / c / "square.png", draw(c, "square", "left"))
        iio.imwrite(root / "cls" / c / "bar.png", draw(c, "bar", "right"))
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    finetune(data=str(root / "captions.jsonl"), model="vlmrm-tiny", out=str(root / "reward"), device="cpu",
             epochs=5, lr=3e-4, batch_size=5, progress=False)  # fmt: skip
    return {"classes": root / "cls", "reward": root / "reward" / "model.safetensors"}


def test_rlcf_raises_accuracy_over_zero_shot_on_drawn_shapes(drawn, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["task=classify", f"data={drawn['classes']}", "model=vlmrm-tiny", "reward_model=vlmrm-tiny",
            f"reward_pretrained={drawn['reward']}", "mode=image", "steps=5", "lr=1e-2", "views=8",
            "select=0.5", "k=3", "progress=false", f"out={out}"]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 10
    assert m["zeroshot_top1"] <= 30 and m["top1"] >= m["zeroshot_top1"] + 30, m  # 20% → 60% here


class Counter:
    """Counts forward passes of a module (and the inputs they saw)."""

    def __init__(self, module) -> None:
        self.calls, self.rows = 0, 0
        module.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        self.calls += 1
        self.rows += int(args[0].shape[0])


def test_policy_and_reward_passes_per_image(drawn) -> None:
    policy = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", resize_mode="center_crop")
    reward = vlmrm.load_clip("vlmrm-tiny", device="cpu", precision="fp32", pretrained=str(drawn["reward"]),
                             resize_mode="center_crop")  # fmt: skip
    views, select, steps = 8, 0.5, 3
    tta = ClassificationTTA(policy, CLIPFeedback([reward]), list(NAMES), mode="image", steps=steps, lr=1e-3,
                            k=3, views=views, select=select)  # fmt: skip
    p_img, r_img = Counter(policy.model.visual), Counter(reward.model.visual)
    p_txt, r_txt = Counter(policy.model.transformer), Counter(reward.model.transformer)
    img = iio.imread(drawn["classes"] / "red" / "square.png")
    tta.adapt(img, seed=0)
    # policy image tower: the selection pass over all views, one pass per step on the kept
    # views, and the final prediction on the centre crop; no text pass (class embeddings cached)
    assert p_img.calls == 1 + steps + 1
    assert p_img.rows == views + steps * int(views * select) + 1
    # reward: the kept views embedded once; the class prompts were embedded at construction
    assert (r_img.calls, r_img.rows) == (1, int(views * select))
    assert p_txt.calls == 0 and r_txt.calls == 0
    tta.adapt(img, seed=1)
    assert (p_img.calls, r_img.calls) == (2 * (steps + 2), 2)
