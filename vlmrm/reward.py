"""The goal-baseline regularised CLIP reward (VLM-RM).

With ``s`` the unit image embedding, ``g``/``b`` the mean unit embeddings of the goal
and baseline prompts, ``d = g - b``, ``P = d dᵀ / ‖d‖²`` and ``M = αP + (1-α)I``::

    R(s) = 1 - ½ ‖M (s - g)‖²

α = 0 is plain CLIP similarity (``cos(s, g)`` for one goal prompt); α = 1 keeps only the
component of ``s - g`` along the goal–baseline direction.

``M`` is never formed: for ``v = s - g``, ``‖Mv‖² = (1-α)²‖v‖² + (1-(1-α)²)(d̂·v)²``, so a
reward costs O(D) per frame instead of O(D²), and many α values cost one pass.

The reward is a callable from frames to one float per frame; how it is applied (env
wrapper, vector wrapper, replay relabelling, video scoring) lives elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from vlmrm.checks import check_alpha, check_alphas
from vlmrm.errors import ConfigError
from vlmrm.models import ClipModel, check_prompts
from vlmrm.preprocess import FrameBatch

_MIN_DIRECTION_NORM = 1e-6


@runtime_checkable
class RewardModel(Protocol):
    """Anything that maps a batch of frames ``(N, H, W, 3)`` uint8 to ``N`` rewards."""

    def __call__(self, frames: FrameBatch) -> np.ndarray | torch.Tensor: ...


def score_frames(reward_model: RewardModel, frames: FrameBatch, dtype: type = np.float32) -> np.ndarray:
    """Call any reward model on a batch of frames → a flat NumPy array, one value per frame.

    Reward models may return NumPy arrays or tensors (on any device); callers that store
    or compare rewards want NumPy, and a model that returns the wrong count is an error
    here rather than a shape mismatch later.
    """
    out = reward_model(frames)
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    out = np.asarray(out, dtype=dtype).reshape(-1)
    if out.shape[0] != len(frames):
        raise ConfigError(
            f"the reward model returned {out.shape[0]} rewards for {len(frames)} frames; "
            "a reward model must score one value per frame"
        )
    return out


def goal_baseline_reward(
    embeddings: torch.Tensor,
    goal: torch.Tensor,
    direction: torch.Tensor | None,
    alpha: float | Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """Reward of unit embeddings ``(N, D)`` for one goal ``(D,)`` and direction ``g - b``.

    Returns ``(N,)`` for a scalar α and ``(A, N)`` for a sequence of ``A`` values.
    Computed in float64 so that the O(1e-3) differences between frames survive.
    """
    scalar = isinstance(alpha, (int, float))
    alphas = torch.as_tensor([alpha] if scalar else alpha, dtype=torch.float64, device=embeddings.device)
    s = embeddings.to(torch.float64)
    s = s / s.norm(dim=-1, keepdim=True)
    v = s - goal.to(device=s.device, dtype=torch.float64)
    vv = (v * v).sum(-1)  # (N,)
    if direction is None:
        check_alphas(alphas.tolist(), has_baseline=False)
        along2 = torch.zeros_like(vv)
    else:
        d = direction.to(device=s.device, dtype=torch.float64)
        along2 = (v @ (d / d.norm())) ** 2  # (N,)
    keep = (1.0 - alphas)[:, None] ** 2  # (A, 1)
    norm2 = keep * vv[None, :] + (1.0 - keep) * along2[None, :]
    rewards = 1.0 - 0.5 * norm2
    return rewards[0] if scalar else rewards


class CLIPReward:
    """Goal-baseline regularised CLIP reward: frames in, one reward per frame out.

    Args:
        clip: a model from :func:`vlmrm.load_clip`.
        goal: the goal prompt(s); several prompts are averaged.
        baseline: the baseline prompt(s) describing the scene without the goal; needed
            for α > 0.
        alpha: regularisation strength in [0, 1].
        renormalize_means: re-normalise the mean prompt embeddings to unit length. The
            reference implementation does not (the default), which matters only for
            several prompts.

    Example:
        >>> import vlmrm, numpy as np
        >>> clip = vlmrm.load_clip("vlmrm-tiny", device="cpu")
        >>> reward = vlmrm.CLIPReward(clip, goal="a humanoid robot kneeling",
        ...                           baseline="a humanoid robot", alpha=0.5)
        >>> reward(np.zeros((4, 64, 64, 3), np.uint8)).shape
        (4,)
    """

    def __init__(
        self,
        clip: ClipModel,
        goal: str | Sequence[str],
        baseline: str | Sequence[str] | None = None,
        alpha: float = 0.0,
        *,
        renormalize_means: bool = False,
        batch_size: int | None = None,
    ) -> None:
        if not isinstance(clip, ClipModel):
            raise ConfigError(
                f"clip must be a model from vlmrm.load_clip(...), got {type(clip).__name__}"
            )
        self.clip = clip
        self.renormalize_means = renormalize_means
        self.batch_size = batch_size
        self.goal_prompts = check_prompts(goal, "goal")
        self.baseline_prompts = None if baseline is None else check_prompts(baseline, "baseline")
        self.goal_embedding, self.direction = self.target_embeddings(self.goal_prompts, self.baseline_prompts)
        self.alpha = check_alpha(alpha, has_baseline=self.direction is not None)

    def __repr__(self) -> str:
        return (
            f"CLIPReward(model={self.clip.name!r}, goal={self.goal_prompts!r}, "
            f"baseline={self.baseline_prompts!r}, alpha={self.alpha})"
        )

    def _mean_embedding(self, prompts: list[str]) -> torch.Tensor:
        m = self.clip.embed_texts(prompts).mean(dim=0)
        return m / m.norm() if self.renormalize_means else m

    def target_embeddings(
        self, goal: list[str], baseline: list[str] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(g, d = g - b)`` for prompt lists; checks that the direction is not zero."""
        g = self._mean_embedding(goal)
        if baseline is None:
            return g, None
        b = self._mean_embedding(baseline)
        d = g - b
        if float(d.norm()) < _MIN_DIRECTION_NORM:
            raise ConfigError(
                f"goal {goal!r} and baseline {baseline!r} have the same embedding, so the "
                "goal-baseline direction is zero; describe the scene without the goal as the "
                "baseline (e.g. goal 'a humanoid robot kneeling', baseline 'a humanoid robot')"
            )
        return g, d

    @property
    def baseline_embedding(self) -> torch.Tensor | None:
        return None if self.direction is None else self.goal_embedding - self.direction

    def set_alpha(self, alpha: float) -> None:
        """Change α; nothing is re-encoded."""
        self.alpha = check_alpha(alpha, has_baseline=self.direction is not None)

    def projection_matrix(self, alpha: float | None = None) -> torch.Tensor:
        """``M = αP + (1-α)I`` as a ``(D, D)`` matrix — for inspection; rewards never build it."""
        a = self.alpha if alpha is None else check_alpha(alpha)
        dim = self.goal_embedding.shape[0]
        eye = torch.eye(dim, dtype=torch.float64, device=self.goal_embedding.device)
        if self.direction is None:
            return eye
        d = self.direction.to(torch.float64)
        return a * torch.outer(d, d) / d.dot(d) + (1 - a) * eye

    def embed(self, frames: FrameBatch) -> torch.Tensor:
        """Unit image embeddings of frames (reuse them with :meth:`reward_from_embeddings`)."""
        return self.clip.embed_images(frames, batch_size=self.batch_size)

    def reward_from_embeddings(
        self,
        embeddings: torch.Tensor | np.ndarray,
        alpha: float | Sequence[float] | None = None,
        goal: str | Sequence[str] | None = None,
        baseline: str | Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Rewards of precomputed image embeddings, optionally for another α or prompts.

        A sequence of α values gives an ``(A, N)`` result in one pass.
        """
        emb = torch.as_tensor(embeddings)
        if emb.ndim != 2:
            raise ConfigError(f"embeddings must have shape (N, D), got {tuple(emb.shape)}")
        if goal is None and baseline is None:
            g, d = self.goal_embedding, self.direction
        else:
            goal_p = self.goal_prompts if goal is None else check_prompts(goal, "goal")
            base_p = self.baseline_prompts if baseline is None else check_prompts(baseline, "baseline")
            g, d = self.target_embeddings(goal_p, base_p)
        if emb.shape[1] != g.shape[0]:
            raise ConfigError(
                f"embeddings have dimension {emb.shape[1]} but the model's is {g.shape[0]}; "
                "were they computed with another model?"
            )
        if alpha is None:
            a: float | list[float] = self.alpha
        elif isinstance(alpha, (int, float)):
            a = check_alpha(alpha, has_baseline=d is not None)
        else:
            a = check_alphas(alpha, has_baseline=d is not None)
        return goal_baseline_reward(emb.to(g.device), g, d, a).float()

    def reward_grid(
        self,
        frames_or_embeddings: FrameBatch,
        *,
        goals: Sequence[str | Sequence[str]] | None = None,
        alphas: Sequence[float] | None = None,
        baseline: str | Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Rewards for every (goal, α) pair from one encoding pass: ``(G, A, N)``.

        ``frames_or_embeddings`` are frames, or ``(N, D)`` float embeddings from :meth:`embed`.
        """
        x = frames_or_embeddings
        is_emb = getattr(x, "ndim", 0) == 2 and (
            x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)
        )
        emb = torch.as_tensor(x) if is_emb else self.embed(x)
        goal_list = [self.goal_prompts] if goals is None else list(goals)
        alpha_list = [self.alpha] if alphas is None else list(alphas)
        return torch.stack(
            [self.reward_from_embeddings(emb, alpha=alpha_list, goal=g, baseline=baseline) for g in goal_list]
        )

    def __call__(self, frames: FrameBatch, alpha: float | None = None) -> np.ndarray | torch.Tensor:
        """One reward per frame: a NumPy array for NumPy input, a tensor for tensor input."""
        rewards = self.reward_from_embeddings(self.embed(frames), alpha=alpha)
        if isinstance(frames, torch.Tensor):
            return rewards.to(frames.device)
        return rewards.cpu().numpy()


#: The CLIPScore scale RLCF uses: a pair's reward is ``2.5 · max(cos, 0)``.
CLIPSCORE_SCALE = 2.5


def clip_score(similarity: torch.Tensor, scale: float = CLIPSCORE_SCALE) -> torch.Tensor:
    """CLIPScore-style reward ``scale · max(cos, 0)`` of cosine similarities (RLCF's feedback)."""
    return scale * similarity.clamp_min(0.0)


class CLIPScoreReward:
    """The RLCF reward of (image, text) pairs, ``scale · max(cos, 0)``, on the reward core.

    Images go through :meth:`ClipModel.embed_images` and prompts through the cached
    :meth:`ClipModel.embed_texts`: the same inference encoders as :class:`CLIPReward`.
    RLCF only ever needs a handful of images × all candidate answers, so callers embed
    once and look rewards up in the ``(N, T)`` table (:meth:`table`).

    Example:
        >>> import vlmrm, numpy as np
        >>> r = vlmrm.CLIPScoreReward(vlmrm.load_clip("vlmrm-tiny", device="cpu"))
        >>> r(np.zeros((2, 64, 64, 3), np.uint8), ["a cat", "a dog", "a car"]).shape
        (2, 3)
    """

    def __init__(self, clip: ClipModel, scale: float = CLIPSCORE_SCALE) -> None:
        if not isinstance(clip, ClipModel):
            raise ConfigError(f"clip must be a model from vlmrm.load_clip(...), got {type(clip).__name__}")
        self.clip = clip
        self.scale = float(scale)

    def table(self, image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Rewards of every pair of unit embeddings ``(..., N, D)`` × ``(..., T, D)`` → ``(..., N, T)``."""
        text = text_embeddings.to(image_embeddings.device).float()
        return clip_score(image_embeddings.float() @ text.transpose(-1, -2), self.scale)

    def __call__(self, frames: FrameBatch, texts: str | Sequence[str]) -> torch.Tensor:
        """Rewards ``(N, T)`` of N frames against T texts."""
        return self.table(self.clip.embed_images(frames), self.clip.embed_texts(texts))
