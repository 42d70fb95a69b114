"""The one rollout loop: evaluation episodes, recordings and rollout datasets all step here.

:func:`iter_steps` runs a policy in a single (non-vector) Gymnasium env and yields a
:class:`Step` after each ``reset`` and after each ``step``, with the frame rendered at
that moment when asked for, so an image always pairs with the observation, reward and
``info`` of the same state. The callers only decide what to keep:

* evaluation (:func:`vlmrm.agents.rollout.run_episodes`): returns, success, video frames;
* recording (``python -m vlmrm.record``): a video per episode and a labels table;
* rollout datasets (``python -m vlmrm.tune.rollouts``): every k-th frame with its state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: ``policy(obs, info) -> action``
Policy = Callable[[Any, dict], Any]
#: ``render(episode, t, done) -> bool``: whether to render the frame of this step.
RenderWhen = Callable[[int, int, bool], bool]


@dataclass
class Step:
    """One moment of an episode: after ``reset`` (``t == 0``, no action) or after step ``t``."""

    episode: int
    t: int
    obs: Any
    info: dict
    action: Any = None
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    frame: Any = field(default=None, repr=False)

    @property
    def is_reset(self) -> bool:
        return self.t == 0

    @property
    def done(self) -> bool:
        """The episode ends here (terminated, truncated, or cut at ``max_steps``)."""
        return self.terminated or self.truncated


def _render_rule(render: bool | RenderWhen) -> RenderWhen:
    if callable(render):
        return render
    return lambda episode, t, done: bool(render)


def iter_steps(
    env: Any,
    policy: Policy,
    episodes: int,
    *,
    seed: int | Callable[[int], int | None] | None = None,
    max_steps: int | None = None,
    render: bool | RenderWhen = True,
) -> Iterator[Step]:
    """Run ``episodes`` episodes of ``policy`` in ``env``, yielding every reset and step.

    Args:
        env: a single Gymnasium env (``render_mode="rgb_array"`` when frames are wanted).
        policy: ``policy(obs, info) -> action``.
        episodes: how many episodes.
        seed: reset seed of episode ``k``: ``seed + k`` for an int, ``seed(k)`` for a
            callable, unseeded for ``None``.
        max_steps: cut an episode after this many steps (reported as truncated).
        render: render every frame (``True``), none, or those a ``(episode, t, done)``
            predicate selects; the frame is ``env.render()`` of the state just reached.
    """
    when = _render_rule(render)
    for ep in range(episodes):
        ep_seed = seed(ep) if callable(seed) else (None if seed is None else seed + ep)
        obs, info = env.reset(seed=ep_seed)
        step = Step(ep, 0, obs, info)
        if when(ep, 0, False):
            step.frame = env.render()
        yield step
        t = 0
        while True:
            action = policy(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            t += 1
            cut = max_steps is not None and t >= max_steps
            step = Step(ep, t, obs, info, action, float(reward), bool(terminated), bool(truncated or cut))
            if when(ep, t, step.done):
                step.frame = env.render()
            yield step
            if step.done:
                break
