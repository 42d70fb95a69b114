"""vlmrm: vision-language models (CLIP) as reward models.

Frames in, rewards out: :func:`load_clip` loads a CLIP through open_clip,
:class:`CLIPReward` turns it into the goal-baseline regularised VLM-RM reward, and the
wrappers apply it to Gymnasium and Stable-Baselines3 environments.

The package face is lazy: ``import vlmrm`` imports nothing heavy, and each public name
imports its module on first use (module ``__getattr__``), so a command answers
``--help`` or refuses a bad setting before torch, gymnasium or SB3 are loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → the module that defines it
_EXPORTS: dict[str, str] = {
    "CLIPReward": "vlmrm.reward",
    "CLIPScoreReward": "vlmrm.reward",
    "RewardModel": "vlmrm.reward",
    "goal_baseline_reward": "vlmrm.reward",
    "clip_score": "vlmrm.reward",
    "ClipModel": "vlmrm.models",
    "load_clip": "vlmrm.models",
    "ConfigError": "vlmrm.errors",
    "VLMRMError": "vlmrm.errors",
    "WeightsNotFoundError": "vlmrm.errors",
    "RankFidelity": "vlmrm.fidelity",
    "rank_fidelity": "vlmrm.fidelity",
    "VideoScores": "vlmrm.scoring",
    "score_video": "vlmrm.scoring",
    "diagnose": "vlmrm.diagnostics",
    "epic_distance": "vlmrm.diagnostics",
    "CLIPRewardVecEnvWrapper": "vlmrm.wrappers",
    "CLIPRewardVectorWrapper": "vlmrm.wrappers",
    "CLIPRewardWrapper": "vlmrm.wrappers",
    "RenderFrameToInfo": "vlmrm.wrappers",
    "make_vec_env": "vlmrm.wrappers",
}

__all__ = [
    "CLIPReward",
    "CLIPRewardVecEnvWrapper",
    "CLIPRewardVectorWrapper",
    "CLIPRewardWrapper",
    "CLIPScoreReward",
    "ClipModel",
    "ConfigError",
    "RankFidelity",
    "RenderFrameToInfo",
    "RewardModel",
    "VLMRMError",
    "VideoScores",
    "WeightsNotFoundError",
    "clip_score",
    "diagnose",
    "epic_distance",
    "goal_baseline_reward",
    "load_clip",
    "make_vec_env",
    "rank_fidelity",
    "score_video",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlmrm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from vlmrm.diagnostics import diagnose, epic_distance
    from vlmrm.errors import ConfigError, VLMRMError, WeightsNotFoundError
    from vlmrm.fidelity import RankFidelity, rank_fidelity
    from vlmrm.models import ClipModel, load_clip
    from vlmrm.reward import (
        CLIPReward,
        CLIPScoreReward,
        RewardModel,
        clip_score,
        goal_baseline_reward,
    )
    from vlmrm.scoring import VideoScores, score_video
    from vlmrm.wrappers import (
        CLIPRewardVecEnvWrapper,
        CLIPRewardVectorWrapper,
        CLIPRewardWrapper,
        RenderFrameToInfo,
        make_vec_env,
    )
