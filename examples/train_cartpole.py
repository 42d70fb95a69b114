"""Train DQN on CartPole with a CLIP reward, then evaluate it: the Python API behind
``python -m vlmrm.train`` and ``python -m vlmrm.evaluate``.

    python examples/train_cartpole.py                      # offline, ~1 minute on a laptop CPU
    python examples/train_cartpole.py reward=vit-b-32 total_steps=200000    # a real CLIP (GPU)

``reward=tiny`` is a small random CLIP: it runs anywhere but its rewards mean nothing. Any
``key=value`` of ``configs/train.yaml`` can be appended.
"""

import sys

from vlmrm.agents import compose_train_config
from vlmrm.evaluate import EvaluateSettings, evaluate
from vlmrm.train import train


def main() -> None:
    cfg = compose_train_config(
        [
            "env=CartPole",
            "goal=pole vertically upright on top of the cart",
            "reward=tiny",
            "total_steps=4000",
            "agent.learning_starts=1000",  # the paper's 75k would not start learning here
            "eval.every=2000",
            *sys.argv[1:],
        ]
    )
    result = train(cfg)  # runs/CartPole-<goal>-<time>/: config, tb/, videos/, checkpoints/
    print(f"trained {result.steps} steps in {result.run_dir}")

    report = evaluate(EvaluateSettings(run=str(result.run_dir), episodes=3))
    print(
        f"ground-truth return {report['gt_return']:.1f}, CLIP return {report['clip_return']:.3f}, "
        f"success rate {report['success_rate']:.2f}; video {report['video']}"
    )


if __name__ == "__main__":  # needed for subprocess=true (worker processes import this file)
    main()
