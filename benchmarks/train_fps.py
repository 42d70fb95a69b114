"""Env steps per second of CLIP-rewarded training against ground-truth training.

For each ``n_envs`` the same agent (the env's config: algorithm and hyper-parameters)
trains for the same number of steps on the env's own reward (``ground_truth``), on it
again but rendering every frame as a CLIP run must (``render``), with episode-batched
CLIP relabelling (``episode``) and with online CLIP rewards, one batch over the sub-envs
per step (``step``); the script prints steps/s and the ratio to ground truth. Only
``learn`` is timed (not model loading or env start-up).

    python benchmarks/train_fps.py                                  # CartPole, vlmrm-tiny, CPU
    python benchmarks/train_fps.py --env Humanoid --model ViT-bigG-14/laion2b_s39b_b160k --steps 20000

``render`` separates the cost of rendering from that of the reward model. Frames are drawn
at the reward model's input size (the trainer's ``env.render_size=auto``: 64² for
``vlmrm-tiny``), in the ``render`` runs too; ``--override "env.render_size=[224,224]"`` draws
larger frames, which the reward model then resizes.
``--learning-starts`` defaults to 0 so that gradient steps are part of the measurement.

``--renderer numpy,pygame`` times the rendering runs with each renderer of the
classic-control envs (the NumPy rasteriser, the default, and pygame); ``--overlap
true,false,process`` the episode-relabelled runs with the reward model on a worker thread
beside the env loop, without, and in a process of its own fed through shared memory
(``auto``, the default, is the trainer's own choice for a run of the env config's length,
``reward.relabel_worker=auto``: with a core idle, a process for a small CPU model and a
worker thread for others; no worker without one). A reward process loads its model before the clock starts. ``--repeats N`` runs N interleaved rounds and reports medians
(each run's ratio is to the ground truth of its own round). The script names the CPU and
the load average before and after, and ends with a Markdown table of each run's steps/s
and its ratio to ground truth, ready to paste. "CPU us/step" is the process's CPU time
(all threads) per env step and "main us/step" the main thread's alone (what is left on the
env loop's critical path when the relabelling worker has a core of its own): unlike steps/s
they barely move with other jobs' load, so the last column (ground truth's CPU per step over
the main thread's) shows what a quiet machine with a free core for the worker can reach.

    python benchmarks/train_fps.py --steps 2000 --n-envs 1 8 --modes ground_truth render episode \
        --subprocess false --threads auto --renderer numpy,pygame --overlap true,false --repeats 3

Sub-envs step in-process and in worker processes (``--subprocess false,true``, one table
block each), and each CLIP run is timed with every thread setting of ``--threads``:
``cores`` is torch's own default (one thread per core, what runs without a policy),
``auto`` the trainer's policy (the cores left after the env workers), or a number. The
ground-truth runs use ``auto``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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
from vlmrm.agents.relabel import auto_overlap
from vlmrm.wrappers import CLIPRewardVecEnvWrapper


def cpu_name() -> str:
    """The CPU's model name (``lscpu``'s "Model name"), for the table's caption."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def warm_up_renderer(env_name: str, frames: int, size: tuple[int, int]) -> float:
    """Render ``frames`` random-policy frames of ``env_name``'s NumPy renderer at ``size``
    (width, height); seconds taken.

    The rasteriser memoises the shapes it draws (per process), as the first minutes of a
    long run do; without this the first timed runs would pay for it and the later ones not.
    """
    from vlmrm.envs import make_env

    if frames <= 0 or env_name not in ("CartPole", "MountainCar"):
        return 0.0
    start = time.perf_counter()
    env = make_env(env_name, renderer="numpy", width=size[0], height=size[1])
    env.reset(seed=12345)
    env.action_space.seed(12345)
    for _ in range(frames):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        env.render()
        if terminated or truncated:
            env.reset()
    env.close()
    return time.perf_counter() - start


def run(cfg, mode: str, n_envs: int, steps: int, subprocess: bool, overlap: bool | str | None = None) -> dict:
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
    if mode == "episode" and overlap is None:  # the trainer's choice for a run of the config's length
        overlap = auto_overlap(reward, cfg.total_steps)
    callback = EpisodeRelabeller(reward, overlap=overlap) if mode == "episode" else None
    if callback is not None:
        callback.ready()  # a reward process loads its model before the clock starts
    venv.reset()
    start, cpu_start, main_start = time.perf_counter(), time.process_time(), time.thread_time()
    model.learn(steps, callback=callback)
    if callback is not None:
        callback.flush()
    seconds = time.perf_counter() - start
    cpu, main_cpu = time.process_time() - cpu_start, time.thread_time() - main_start
    venv.close()
    out = {"steps": model.num_timesteps, "seconds": seconds, "fps": model.num_timesteps / seconds,
           "cpu_us": cpu / model.num_timesteps * 1e6, "main_us": main_cpu / model.num_timesteps * 1e6}
    if mode == "episode":
        out["overlap"] = overlap
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
    p.add_argument("--renderer", default="numpy",
                   help="renderer of the classic-control envs for the runs that render, comma-separated: numpy, "
                        "pygame (ignored by other envs)")
    p.add_argument("--warmup-frames", type=int, default=3000,
                   help="random-policy frames rendered before the timed runs, so that the NumPy rasteriser's "
                        "memoised shapes are those of a long run (0: none)")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of all runs, interleaved; the table gives medians (a shared machine's load "
                        "changes between runs)")
    p.add_argument("--overlap", default="auto",
                   help="episode relabelling with the reward model on a worker thread: true, false, process "
                        "(in a child process), auto (the default: a worker thread when a core is idle), "
                        "comma-separated")
    args = p.parse_args()
    started = time.perf_counter()
    cores = available_cores()
    renderers = args.renderer.split(",")
    overlaps = [{"true": True, "false": False, "process": "process"}.get(v.strip().lower(), "auto")
                for v in args.overlap.split(",")]
    frame = tuple(_config(args, "episode", None, 1).env.render_size)  # what the CLIP and render runs draw
    print(f"env={args.env} model={args.model} steps={args.steps} cores={cores} frames={frame[0]}x{frame[1]}")
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs); load average (1/5/15 min) at start: "
          f"{load_average()}")
    if "numpy" in renderers:
        seconds = warm_up_renderer(args.env, args.warmup_frames, frame)
        print(f"warm-up: {args.warmup_frames} frames rendered in {seconds:.1f} s (not timed below)")
    print(f"{'round':>5} {'n_envs':>6} {'workers':>7} {'reward':>34} {'threads':>7} {'steps/s':>9} "
          f"{'vs GT':>7} {'CPU us/step':>11} {'main us/step':>12} {'CLIP share':>10} {'CLIP frames/s':>13}")
    # (subprocess, n_envs) -> run label -> per-round (steps/s, ratio to that round's ground truth)
    results: dict[tuple[bool, int, int], dict[str, list[tuple[float, float]]]] = {}
    for subprocess in args.subprocess.split(","):
        for n_envs in args.n_envs:
            if subprocess == "true" and n_envs == 1:
                continue  # one env always steps in-process
            # Rounds interleave the runs, so that a change of the machine's load hits all alike.
            for round_ in range(1, args.repeats + 1):
                base, base_main = None, float("nan")
                for mode, renderer, overlap in _variants(args.modes, renderers, overlaps):
                    cfg = _config(args, mode, renderer, n_envs)
                    sub = cfg.subprocess if subprocess == "auto" else subprocess == "true"
                    sub = bool(sub and n_envs > 1)
                    workers = n_envs if sub else 0
                    settings = ["auto"] if mode in ("ground_truth", "render") else args.threads.split(",")
                    for setting in settings:
                        value = cores if setting == "cores" else (setting if setting == "auto" else int(setting))
                        threads = torch_threads(value, workers)
                        torch.set_num_threads(threads)
                        res = run(cfg, mode, n_envs, args.steps, sub,
                                  overlap={"auto": None, "process": "process"}.get(overlap, overlap))
                        if mode == "ground_truth":
                            base = res["fps"]
                        ratio = res["fps"] / base if base else float("nan")
                        share = f"{res['reward_share']:10.0%}" if "reward_share" in res else " " * 10
                        rfps = f"{res['reward_fps']:13.0f}" if "reward_fps" in res else " " * 13
                        label = _label(mode, renderer, overlap, res.get("overlap"))
                        if mode == "ground_truth":
                            base_main = res["main_us"]
                        print(f"{round_:>5} {n_envs:>6} {workers:>7} {label:>34} {f'{threads} {setting}':>7} "
                              f"{res['fps']:9.0f} {ratio:7.2f} {res['cpu_us']:11.0f} {res['main_us']:12.0f} "
                              f"{share} {rfps}", flush=True)
                        block = results.setdefault((sub, n_envs, workers), {})
                        block.setdefault(f"{label}, {threads} {setting}", []).append(
                            (res["fps"], ratio, res["cpu_us"], res["main_us"], base_main / res["main_us"]))
    print(f"(run time {time.perf_counter() - started:.0f} s; load average at the end: {load_average()})")
    print()
    print(f"{args.env}, `{args.model}`, {args.steps} env steps per run, {cpu_name()}; median of "
          f"{args.repeats} interleaved round(s):")
    print()
    print("| n_envs | workers | run | env steps/s | / ground truth | CPU µs/step (all threads) | "
          "main-thread CPU µs/step | ground truth's / main thread's CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (_, n_envs, workers), block in results.items():
        for label, values in block.items():
            fps, ratio, cpu, main, cpu_ratio = (statistics.median(v[i] for v in values) for i in range(5))
            print(f"| {n_envs} | {workers} | {label} | {fps:.0f} | **{ratio:.2f}** | {cpu:.0f} | {main:.0f} | "
                  f"{cpu_ratio:.2f} |")


def _config(args, mode: str, renderer: str | None, n_envs: int):
    if mode in ("ground_truth", "render"):
        reward = "reward=ground_truth"
    else:
        reward = "reward=tiny" if args.model == "vlmrm-tiny" else f"reward.model={args.model}"
    size = []
    if mode == "render":  # frames drawn at the size the CLIP runs draw them (env.render_size=auto)
        w, h = _config(args, "episode", renderer, n_envs).env.render_size
        size = [f"env.render_size=[{w},{h}]"]
    overrides = [f"env={args.env}", reward, *size,
                 f"agent.learning_starts={args.learning_starts}", f"n_envs={n_envs}", *args.override]
    if mode in ("episode", "step"):
        overrides.append(f"reward.relabel={mode}")
        if args.precision:
            overrides.append(f"reward.precision={args.precision}")
    if renderer is not None and args.env in ("CartPole", "MountainCar"):
        overrides.append(f"++env.kwargs.renderer={renderer}")  # set or add
    return compose_train_config(overrides)


def _variants(modes: list[str], renderers: list[str], overlaps: list[bool | str]):
    """(mode, renderer, overlap) per timed run: ground truth once, each rendering run per
    renderer, episode relabelling also per overlap setting."""
    for mode in modes:
        if mode == "ground_truth":
            yield mode, None, None
        for renderer in renderers if mode != "ground_truth" else []:
            for overlap in overlaps if mode == "episode" else [None]:
                yield mode, renderer, overlap


def _label(mode: str, renderer: str | None, overlap: bool | str | None, chosen: bool | str | None = None) -> str:
    label = {"ground_truth": "ground truth", "render": "GT + render", "episode": "CLIP episode",
             "step": "CLIP online"}[mode]
    details = [renderer] if renderer else []
    names = {True: "overlap", False: "no overlap", "process": "reward process"}
    if overlap is not None:
        details.append(names.get(overlap) or f"auto: {names.get(chosen, '?')}")
    return f"{label} ({', '.join(details)})" if details else label


if __name__ == "__main__":
    main()
