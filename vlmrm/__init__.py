"""vlmrm: vision-language models (CLIP) as reward models.

Frames in, rewards out: :func:`load_clip` loads a CLIP through open_clip,
:class:`CLIPReward` turns it into the goal-baseline regularised VLM-RM reward, and the
wrappers apply it to Gymnasium and Stable-Baselines3 environments.

The package face is lazy: ``import vlmrm`` imports nothing heavy, and each public name
imports its module on first use (module ``__getattr__``), so a command answers
``--help`` or refuses a bad setting before torch, gymnasium or SB3 are loaded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

# Without a window system, pygame (classic-control frames) needs no video driver; SDL's own
# probe would print "error: XDG_RUNTIME_DIR is invalid..." on every first render otherwise.
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from vlmrm.runtime import moved
from vlmrm.runtime.lazy import lazy_attributes

moved.install()  # old paths of moved modules import with a warning (vlmrm.runtime.moved)

__version__ = "0.1.0"

#: module → the public names it defines
_EXPORTS = {
    "vlmrm.reward": (
        "CLIPReward", "CLIPScoreReward", "RewardModel", "goal_baseline_reward", "clip_score",
    ),
    "vlmrm.models": ("ClipModel", "load_clip"),
    "vlmrm.errors": ("ConfigError", "LongPromptWarning", "VLMRMError", "VLMRMWarning", "WeightsNotFoundError"),
    "vlmrm.fidelity": ("RankFidelity", "rank_fidelity"),
    "vlmrm.scoring": ("VideoScores", "score_video"),
    "vlmrm.diagnostics": ("diagnose", "epic_distance"),
    "vlmrm.agents.api": ("train_agent",),
    "vlmrm.agents.config": ("compose_train_config",),
    "vlmrm.agents.load": ("LoadedRun", "load_run"),
    "vlmrm.wrappers": (
        "CLIPRewardVecEnvWrapper", "CLIPRewardVectorWrapper", "CLIPRewardWrapper",
        "RenderFrameToInfo", "make_vec_env",
    ),
}

__all__ = [
    "CLIPReward",
    "CLIPRewardVecEnvWrapper",
    "CLIPRewardVectorWrapper",
    "CLIPRewardWrapper",
    "CLIPScoreReward",
    "ClipModel",
    "ConfigError",
    "LoadedRun",
    "LongPromptWarning",
    "RankFidelity",
    "RenderFrameToInfo",
    "RewardModel",
    "VLMRMError",
    "VLMRMWarning",
    "VideoScores",
    "WeightsNotFoundError",
    "clip_score",
    "compose_train_config",
    "diagnose",
    "epic_distance",
    "goal_baseline_reward",
    "load_clip",
    "load_run",
    "make_vec_env",
    "rank_fidelity",
    "score_video",
    "train_agent",
]


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from vlmrm.agents.api import train_agent
    from vlmrm.agents.config import compose_train_config
    from vlmrm.agents.load import LoadedRun, load_run
    from vlmrm.diagnostics import diagnose, epic_distance
    from vlmrm.errors import (
        ConfigError,
        LongPromptWarning,
        VLMRMError,
        VLMRMWarning,
        WeightsNotFoundError,
    )
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
