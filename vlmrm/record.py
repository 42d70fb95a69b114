"""``python -m vlmrm.record``: roll out an env, record it with its ground truth, and score it.

Checking a CLIP reward before training means asking: on real rollouts of this env, does
the reward go up when the task is done? This command answers it in one go::

    python -m vlmrm.record env=CartPole episodes=3 policy=random out=rec/ \\
        goal="a pole standing upright" baseline="a pole" model=ViT-B-32/openai alpha=[0,0.5,1]
    python -m vlmrm.record env=Humanoid policy=runs/sac.zip episodes=2 out=rec/

It writes ``out/videos/episode_NNN.mp4`` (one per episode, the frame of the state reached
by each step, so frame *i* pairs with the reward of step *i*), ``out/labels.csv`` (one row
per frame: ``video, frame, time, episode, step, env_reward, terminated, truncated`` and
every scalar entry of the step's ``info``, e.g. ``success``), then runs the scoring of
:mod:`vlmrm.score` on the videos with ``labels=out/labels.csv``: reward CSV, plots,
summary, and correlations/ROC-AUC/EPIC distance of the CLIP reward against the env's own
reward and success flags. Sweep ``goal``, ``baseline`` and ``alpha`` by passing lists, or
re-score the recorded videos later with ``python -m vlmrm.score``.

``policy`` is ``random`` (seeded ``action_space.sample()``) or a Stable-Baselines3 ``.zip``
(algorithm detected from the file, or ``algo=PPO|SAC|TD3|A2C|DQN|DDPG``). Without a goal
the env's defaults are used when it has them (``vlmrm.envs.ENV_DEFAULTS``); otherwise the
rollouts are only recorded.

The settings live in :mod:`vlmrm.scoring.settings`, the run in :mod:`vlmrm.scoring.recorder`.
"""

from __future__ import annotations

from vlmrm.cli.args import Command, entry_point
from vlmrm.scoring.settings import RecordSettings

COMMAND = Command(
    prog="python -m vlmrm.record",
    settings=RecordSettings,
    summary=(
        "Roll out an env (random policy or an SB3 checkpoint), record one video per episode "
        "with its per-frame ground truth (labels.csv), then score the videos against it."
    ),
    examples=(
        "python -m vlmrm.record env=CartPole-v1 episodes=2 policy=random out=rec/ "
        "goal='a pole standing upright' baseline='a pole' alpha=[0,1]",
    ),
)


def _body(settings: RecordSettings) -> int:
    from vlmrm.scoring.recorder import run_record

    return run_record(settings)


main = entry_point(COMMAND, _body)

if __name__ == "__main__":
    raise SystemExit(main())
