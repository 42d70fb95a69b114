"""Running ``python -m vlmrm.score``: load the reward once, score each video, hand over the outcomes.

One process scores the videos in order and streams each outcome to
:class:`~vlmrm.scoring.outputs.Outputs`. Under ``torchrun`` every rank loads its own CLIP
on its own device and scores its :func:`~vlmrm.distributed.shard` of the videos; rank 0
gathers the outcomes in the original order and alone writes the files and prints the
tables, exactly as one process would. A settings problem on any rank stops every rank
(:func:`~vlmrm.distributed.run_together`), before any of them waits on the others.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrm.errors import ConfigError, VLMRMError
from vlmrm.runtime.console import make_console
from vlmrm.scoring.outputs import Outputs, Scored, ScoreRun, unique_stems
from vlmrm.scoring.settings import ScoreSettings


@dataclass
class Setup:
    """What every rank needs to score: the settings, the reward and its checked sweep."""

    settings: ScoreSettings
    reward: Any
    sweep: Any
    compile: str | None
    out: Path
    label_table: Any = None


def _current_info() -> Any:
    """The job's :class:`~vlmrm.distributed.DistInfo`: rank 0 of 1 unless a process group is up."""
    import torch.distributed as dist

    from vlmrm.distributed import DistInfo, init_distributed

    if dist.is_available() and dist.is_initialized():
        return init_distributed()
    return DistInfo()


def _make_out(settings: ScoreSettings) -> Path:
    out = Path(settings.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the output folder {settings.out!r}: {exc.strerror or exc}"
        ) from None
    return out


def load_scoring_clip(settings: ScoreSettings, info: Any = None) -> Any:
    """The CLIP of the scoring settings, on this rank's device (``record`` loads it before
    rolling out, so that a missing model fails before any episode is recorded)."""
    from vlmrm.distributed import rank_device
    from vlmrm.models import load_clip

    info = _current_info() if info is None else info
    device = rank_device(None if settings.device == "auto" else settings.device, info)
    return load_clip(
        settings.model,
        device=device,
        precision=settings.precision,
        pretrained=settings.pretrained,
        compile=settings.compile or False,
        backend=settings.backend,
    )


def setup(settings: ScoreSettings, info: Any, clip: Any = None) -> Setup:
    """Labels (rank 0), the CLIP on this rank's device (or ``clip``, already loaded), the
    reward and every combination checked."""
    from vlmrm.diagnostics import load_labels
    from vlmrm.reward import CLIPReward
    from vlmrm.scoring.core import ClipSweep

    settings.validate()  # a no-op after the command line; checks settings built in Python
    label_table = None
    if info.is_main and settings.labels is not None and settings.labels != "auto":
        label_table = load_labels(settings.labels, settings.label_column)
    missing = [v for v in settings.videos or [] if not Path(v).exists()]
    if missing and len(missing) == len(settings.videos):  # said before a model loads (or cannot)
        raise ConfigError(
            f"{', '.join(missing)}: no such file or folder; give video files or folders of images "
            "(python -m vlmrm.record env=CartPole model=vlmrm-tiny out=rec/ records some)"
        )
    clip = clip if clip is not None else load_scoring_clip(settings, info)
    goals = [settings.goal] if isinstance(settings.goal, str) else settings.goal
    baselines = settings.baseline
    first_base = baselines if baselines is None or isinstance(baselines, str) else baselines[0]
    reward = CLIPReward(clip, goal=goals[0], baseline=first_base, batch_size=settings.batch_size)
    # every combination is checked now, not once per video
    sweep = ClipSweep.build(reward, goals, baselines, settings.alpha)
    out = _make_out(settings) if info.is_main else Path(settings.out)  # only rank 0 writes
    return Setup(settings, reward, sweep, settings.compile, out, label_table)


def _progress_option(progress: bool, info: Any) -> Any:
    """Under torchrun every rank shows its own bar, prefixed with its rank, on its own line."""
    if not progress or not info.enabled:
        return progress
    return {"prefix": f"[rank {info.rank}/{info.world_size}] ", "position": info.local_rank}


def _error_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def score_one(video: str, stem: str, s: Setup, progress: Any) -> Scored:
    """Score one video; a failure is recorded (not raised) so the others go on."""
    from vlmrm.scoring.core import score_video

    cfg, sweep = s.settings, s.sweep
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            scores = score_video(  # the sweep's prompts and α, then which frames, in what batches
                video, s.reward, goals=sweep.goals, baselines=sweep.baselines, alphas=sweep.alphas,
                stride=cfg.stride, start=cfg.start, end=cfg.end, fps=cfg.fps, batch_size=cfg.batch_size,
                progress=progress,
            )
    except KeyboardInterrupt:
        raise
    except VLMRMError as exc:
        return Scored(video, stem, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the others
        return Scored(video, stem, error=_error_line(exc))
    return Scored(video, stem, scores, warnings=[str(w.message) for w in caught])


def _outcomes(s: Setup, info: Any, outputs: Outputs | None) -> list[Scored] | None:
    """Score this rank's videos; one process streams each outcome into ``outputs`` at once."""
    from vlmrm.distributed import gather_to_rank0, shard

    jobs = list(zip(s.settings.videos, unique_stems(s.settings.videos), strict=True))
    progress = _progress_option(s.settings.progress, info)
    if not info.enabled:
        for video, stem in jobs:
            outputs.add(score_one(video, stem, s, progress))  # type: ignore[union-attr]
        return []
    mine = [score_one(video, stem, s, progress) for video, stem in shard(jobs, info)]
    return gather_to_rank0(mine, info)


def run(
    settings: ScoreSettings, console: Any = None, err_console: Any = None, info: Any = None, clip: Any = None
) -> ScoreRun:
    """Score every video, write the outputs and print the tables; return what was produced.

    Settings problems raise :class:`ConfigError` before any video is read; a video that
    fails is recorded in ``ScoreRun.failures`` and the others go on. ``info``: a
    :class:`vlmrm.distributed.DistInfo` (default: the process group already set up, if
    any). Ranks other than 0 return an empty :class:`ScoreRun`.
    """
    from vlmrm.distributed import run_together
    from vlmrm.scoring.report import print_report

    info = _current_info() if info is None else info
    console = console or make_console()
    err = err_console or make_console(stderr=True)
    s = run_together(lambda: setup(settings, info, clip), info)
    result = ScoreRun()
    outputs = Outputs(s.settings, s.out, s.label_table, result, err) if info.is_main else None
    try:
        merged = _outcomes(s, info, outputs)
        if outputs is None:
            return result
        for item in merged or []:
            outputs.add(item)
        outputs.finish()
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    print_report(result, console, err)
    return result


def main_body(settings: ScoreSettings) -> int:
    """What ``python -m vlmrm.score`` runs after parsing: a torchrun-aware session, then :func:`run`."""
    from vlmrm.distributed import distributed_session

    # gloo: only pickled results travel between ranks; the GPUs only run CLIP.
    # The session always leaves the process group, also on Ctrl-C.
    try:
        with distributed_session(backend="gloo") as info:
            return run(settings, info=info).exit_code
    except KeyboardInterrupt:
        from vlmrm.runtime.epilogue import last_word

        last_word(
            f"\ninterrupted; the score tables in {settings.out} are written once every video is scored "
            "— run the same command again"
        )
        return 130
