"""vlmrm: vision-language models (CLIP) as reward models.

Frames in, rewards out: :func:`load_clip` loads a CLIP through open_clip,
:class:`CLIPReward` turns it into the goal-baseline regularised VLM-RM reward, and the
wrappers apply it to Gymnasium and Stable-Baselines3 environments.
"""

# torchvision (through open_clip) loads triton's LLVM; it must come before any MuJoCo
# EGL context is created (Mesa's LLVM), or the process crashes on the later import.
import torchvision  # noqa: F401, I001

from vlmrm.diagnostics import diagnose, epic_distance
from vlmrm.errors import ConfigError, VLMRMError, WeightsNotFoundError
from vlmrm.fidelity import RankFidelity, rank_fidelity
from vlmrm.models import ClipModel, load_clip
from vlmrm.reward import CLIPReward, RewardModel, goal_baseline_reward
from vlmrm.scoring import VideoScores, score_video
from vlmrm.wrappers import (
    CLIPRewardVecEnvWrapper,
    CLIPRewardVectorWrapper,
    CLIPRewardWrapper,
    RenderFrameToInfo,
    make_vec_env,
)

__version__ = "0.1.0"

__all__ = [
    "CLIPReward",
    "CLIPRewardVecEnvWrapper",
    "CLIPRewardVectorWrapper",
    "CLIPRewardWrapper",
    "ClipModel",
    "ConfigError",
    "RankFidelity",
    "RenderFrameToInfo",
    "RewardModel",
    "VideoScores",
    "VLMRMError",
    "WeightsNotFoundError",
    "diagnose",
    "epic_distance",
    "goal_baseline_reward",
    "load_clip",
    "make_vec_env",
    "rank_fidelity",
    "score_video",
]
