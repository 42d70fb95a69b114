"""Env steps per second of CLIP-rewarded training against ground-truth training.

For each ``n_envs`` the same agent (the env's config: algorithm and hyper-parameters)
trains for the same number of steps on the env's own reward (``ground_truth``), on it
again but rendering every frame as a CLIP run must (``render``), with episode-batched
CLIP relabelling (``episode``) and with online CLIP rewards, one batch over the sub-envs
per step (``step``); the script prints steps/s and the ratio to ground truth. Only
``learn`` is timed (not model loading or env start-up).

    python benchmarks/train_fps.py                                  # CartPole, vlmrm-tiny, CPU
    python benchmarks/train_fps.py --env Humanoid --model ViT-bigG-14/laion2b_s39b_b160k --steps 20000

``render`` separates the cost of rendering from that of the reward model.
``--learning-starts`` defaults to 0 so that gradient steps are part of the measurement.

Sub-envs step in-process and in worker processes (``--subprocess false,true``, one table
block each), and each CLIP run is timed with every thread setting of ``--threads``:
``cores`` is torch's own default (one thread per core, what runs without a policy),
``auto`` the trainer's policy (the cores left after the env workers), or a number. The
ground-truth runs use ``auto``.
"""

from __future__ import annotations

import argparse
import time

import torch

import vlmrm.envs  # noqa: F401  (torchvision before MuJoCo; the package face itself is lazy)
from vlmrm.agents import (
    EpisodeRelabeller,
    TimedReward,
    build_agent,
    build_reward_model,
    compose_train_config,
    env_factory,
    goal_prompt,
    make_training_env,
)
from vlmrm.agents.config import available_cores, torch_threads
from vlmrm.wrappers import CLIPRewardVecEnvWrapper


def run(cfg, mode: str, n_envs: int, steps: int, subprocess: bool) -> dict:
    factory = env_factory(cfg.env)
    reward = None
    if mode not in ("ground_truth", "render"):
        reward = TimedReward(
            build_reward_model(cfg.reward, goal_prompt(cfg.env.goal_template, cfg.goal), cfg.baseline)
        )
    venv = make_training_env(factory, n_envs, seed=0, subprocess=subprocess, render_frames=mode != "ground_truth")
    if mode == "step":
        venv = CLIPRewardVecEnvWrapper(venv, reward)
    model = build_agent(cfg.agent, venv, seed=0, device=cfg.device)
    callback = EpisodeRelabeller(reward) if mode == "episode" else None
    venv.reset()
    start = time.perf_counter()
    model.learn(steps, callback=callback)
    if callback is not None:
        callback.flush()
    seconds = time.perf_counter() - start
    venv.close()
    out = {"steps": model.num_timesteps, "seconds": seconds, "fps": model.num_timesteps / seconds}
    if reward is not None:
        out["reward_share"] = reward.stats.seconds / seconds
        out["reward_fps"] = reward.stats.frames_per_second
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole")
    p.add_argument("--model", default="vlmrm-tiny", help="load_clip spec of the reward model")
    p.add_argument("--steps", type=int, default=2000, help="env steps per run")
    p.add_argument("--n-envs", type=int, nargs="+", default=[1, 8])
    p.add_argument("--modes", nargs="+", default=["ground_truth", "render", "episode", "step"],
                   choices=["ground_truth", "render", "episode", "step"])
    p.add_argument("--learning-starts", type=int, default=0)
    p.add_argument("--subprocess", default="false,true",
                   help="sub-envs in worker processes: false, true or auto (the env config's choice), comma-separated")
    p.add_argument("--override", nargs="*", default=[], help="extra key=value config overrides")
    p.add_argument("--threads", default="cores,auto",
                   help="torch threads of the CLIP runs, comma-separated: cores (torch's default), auto (the "
                        "trainer's policy) or N")
    p.add_argument("--precision", default=None, help="reward.precision of the CLIP runs (e.g. int8)")
    args = p.parse_args()
    started = time.perf_counter()
    cores = available_cores()
    print(f"env={args.env} model={args.model} steps={args.steps} cores={cores}")
    print(f"{'n_envs':>6} {'workers':>7} {'reward':>13} {'threads':>7} {'steps/s':>9} {'vs GT':>7} "
          f"{'CLIP share':>10} {'CLIP frames/s':>13}")
    for subprocess in args.subprocess.split(","):
        for n_envs in args.n_envs:
            if subprocess == "true" and n_envs == 1:
                continue  # one env always steps in-process
            base = None
            for mode in args.modes:
                if mode in ("ground_truth", "render"):
                    reward = "reward=ground_truth"
                else:
                    reward = "reward=tiny" if args.model == "vlmrm-tiny" else f"reward.model={args.model}"
                overrides = [f"env={args.env}", reward,
                             f"agent.learning_starts={args.learning_starts}", f"n_envs={n_envs}", *args.override]
                if mode in ("episode", "step"):
                    overrides.append(f"reward.relabel={mode}")
                    if args.precision:
                        overrides.append(f"reward.precision={args.precision}")
                cfg = compose_train_config(overrides)
                sub = cfg.subprocess if subprocess == "auto" else subprocess == "true"
                sub = bool(sub and n_envs > 1)
                workers = n_envs if sub else 0
                settings = ["auto"] if mode in ("ground_truth", "render") else args.threads.split(",")
                for setting in settings:
                    value = cores if setting == "cores" else (setting if setting == "auto" else int(setting))
                    threads = torch_threads(value, workers)
                    torch.set_num_threads(threads)
                    res = run(cfg, mode, n_envs, args.steps, sub)
                    if mode == "ground_truth":
                        base = res["fps"]
                    ratio = f"{res['fps'] / base:7.2f}" if base else "      -"
                    share = f"{res['reward_share']:10.0%}" if "reward_share" in res else " " * 10
                    rfps = f"{res['reward_fps']:13.0f}" if "reward_fps" in res else " " * 13
                    label = {"ground_truth": "ground truth", "render": "GT + render", "episode": "CLIP episode",
                             "step": "CLIP online"}[mode]
                    print(f"{n_envs:>6} {workers:>7} {label:>13} {f'{threads} {setting}':>7} {res['fps']:9.0f} "
                          f"{ratio} {share} {rfps}", flush=True)
    print(f"(run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
