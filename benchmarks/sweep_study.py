"""The showcase study: a tuned tiny CLIP reward vs the ground truth vs random, over seeds.

One command runs, per env (CartPole, MountainCar and gymnasium's own ``Pendulum-v1``):

1. the tuned reward: ``<weights-dir>/<env>/seed0/tune-bt/model.safetensors``, made first
   when absent by ``benchmarks/offline_learning.py``'s stages (rollouts captioned by state
   predicates, contrastive then Bradley–Terry tuning of ``vlmrm-tiny``, the reward's rank
   agreement with the goal distance); the study's seeds are the *agent* seeds;
2. one sweep, ``python -m vlmrm.train -m env=<env> reward=tiny,ground_truth
   seed=<seeds> ... reward.pretrained=<weights> launcher=<launcher>
   launcher.parallel=<n> out=<out> run_name=<env>`` (the ground-truth arm has no CLIP, so
   it ignores ``reward.pretrained``), with the budgets of :data:`BUDGETS`, agents of
   ``offline_learning.ENVS`` and ``threads=1`` per job;
3. a uniform-random policy on the same evaluation episodes: for agent seed ``s`` the
   trainer's final evaluation resets episode ``k`` with seed ``s + 10000 + step + k``
   (``step``: the job's final step), and so does the random policy here;
4. ``python -m vlmrm.study <sweep folder>`` (IQM over seeds, 95% stratified bootstrap
   interval), and one table: env x arm (CLIP / ground truth / random) with the IQM of
   the final ground-truth return, its interval and ``n``, and each sweep's wall time.

``--compare-launchers`` also runs the grid under ``launcher=basic`` (one job after
another in one process) and prints the wall-time ratio basic / ``--launcher``;
``--compare-seeds`` makes that comparison on a subset of the seeds (both launchers then
run the subset, in sweeps named ``<env>-<launcher>``). ``--single`` runs each arm once
without ``-m`` (seed: the first of ``--seeds``) and prints its wall time and final
return: the check of the budgets before a sweep. ``--dry-run`` prints the commands.

Usage (run it niced on a shared machine; figures in ``benchmarks/RESULTS.md``)::

    python benchmarks/sweep_study.py --weights-dir runs/showcase-weights --out runs/showcase
    python benchmarks/sweep_study.py --weights-dir runs/showcase-weights --out runs/showcase \\
        --compare-launchers
    python benchmarks/sweep_study.py --weights-dir runs/showcase-weights --out runs/showcase-single \\
        --single --budget CartPole=40000
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Agent budget per env: environment steps, and steps between evaluations (0: only the final
#: one). The smallest measured budgets at which the ground-truth agent of seed 0 learns
#: (CartPole 500, MountainCar at the flag: at 15k steps it was not, Pendulum about -137),
#: so that the default grid (3 envs x 2 rewards x 5 seeds, 2 jobs at once) stays within
#: about 20 minutes of a quiet 2-core CPU (RESULTS.md, "Showcase study: budgets").
BUDGETS: dict[str, dict[str, int]] = {
    "CartPole": {"total_steps": 40_000, "eval_every": 0},
    "MountainCar": {"total_steps": 20_000, "eval_every": 0},
    "Pendulum-v1": {"total_steps": 10_000, "eval_every": 0},
}
#: The swept reward presets and the random policy, with their names in the table.
ARMS = {"tiny": "CLIP (tuned tiny)", "ground_truth": "ground truth", "random": "random"}
LAUNCHERS = ("submitit_local", "basic")
#: The trainer's final evaluation seeds episode k of agent seed s with s + EVAL_SEED_OFFSET + step + k.
EVAL_SEED_OFFSET = 10_000


def say(msg: str) -> None:
    print(f"[sweep_study] {msg}", file=sys.stderr, flush=True)


def _offline_learning() -> Any:
    """``benchmarks/offline_learning.py``, imported by name from this script's folder (which is
    not on ``sys.path`` when this script runs under runpy)."""
    if str(Path(__file__).parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).parent))
    import offline_learning

    return offline_learning


# --------------------------------------------------------------------------- statistics


def iqm_interval(values: Sequence[float], reps: int = 20_000, seed: int = 0) -> tuple[float, float, float]:
    """IQM of ``values`` and its 95% bootstrap interval (percentile; one task: stratified = plain).

    rliable's estimator when it imports, else the same quantities with ``scipy.stats``
    (``trim_mean(x, 0.25)``, ``bootstrap``).
    """
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0]), float(x[0])
    try:
        from rliable import library, metrics

        point, interval = library.get_interval_estimates(
            {"x": x[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps,
            random_state=np.random.RandomState(seed),
        )
        return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])
    except Exception:  # noqa: BLE001 - rliable missing or broken by its dependencies: scipy below
        from scipy import stats

        def iqm(a: Any, axis: int = -1) -> Any:
            return stats.trim_mean(a, 0.25, axis=axis)

        ci = stats.bootstrap((x,), iqm, confidence_level=0.95, method="percentile",
                             n_resamples=reps, random_state=seed).confidence_interval
        return float(iqm(x)), float(ci.low), float(ci.high)


# --------------------------------------------------------------------------- commands


@dataclass
class Plan:
    """What one invocation runs: envs, seeds, budgets, launcher, folders."""

    envs: list[str]
    seeds: list[int]
    budgets: dict[str, dict[str, int]]
    launcher: str
    parallel: int
    out: Path
    weights_dir: Path
    eval_episodes: int
    compare_seeds: list[int] | None = None  # the launcher comparison's seeds (None: no comparison)
    rewards: list[str] = field(default_factory=lambda: [a for a in ARMS if a != "random"])
    weights: dict[str, Path] = field(default_factory=dict)


def fixed_overrides(plan: Plan, env: str) -> list[str]:
    """The overrides every job of an env's sweep shares (env, agent, budget, evaluation, weights)."""
    from vlmrm.agents.config import compose_train_config

    ol = _offline_learning()
    spec = ol.ENVS[env]
    base = compose_train_config([*ol.env_overrides(env), f"agent={spec['algo']}", "reward=tiny"])
    size = spec.get("size", 128)
    budget = plan.budgets[env]
    return [
        *ol.env_overrides(env),
        *ol.agent_overrides(env, base.agent),
        f"total_steps={budget['total_steps']}",
        f"env.render_size=[{size},{size}]",
        f"eval.episodes={plan.eval_episodes}",
        f"eval.every={budget['eval_every']}",
        "eval.video=false",
        "checkpoint_every=0",
        "progress=false",
        "threads=1",
    ]


def sweep_command(plan: Plan, env: str, launcher: str, seeds: Sequence[int], run_name: str) -> list[str]:
    """``python -m vlmrm.train -m ...``: both rewards x ``seeds`` of ``env`` under ``launcher``."""
    cmd = [
        sys.executable, "-m", "vlmrm.train", "-m",
        *fixed_overrides(plan, env),
        f"reward={','.join(plan.rewards)}",
        f"seed={','.join(str(s) for s in seeds)}",
        f"reward.pretrained={plan.weights[env]}",
        f"launcher={launcher}",
    ]
    if launcher != "basic":
        cmd.append(f"launcher.parallel={plan.parallel}")
    return [*cmd, f"out={plan.out}", f"run_name={run_name}"]


def single_command(plan: Plan, env: str, arm: str, seed: int) -> list[str]:
    """One run of one arm, without ``-m`` (the check of a budget)."""
    return [
        sys.executable, "-m", "vlmrm.train",
        *fixed_overrides(plan, env),
        f"reward={arm}",
        f"seed={seed}",
        f"reward.pretrained={plan.weights[env]}",
        f"out={plan.out / 'single'}",
        f"run_name={env}-{arm}-seed{seed}",
    ]


def show(cmd: Sequence[str]) -> str:
    """A command as one would type it (``python`` for this interpreter)."""
    return shlex.join(["python", *cmd[1:]] if cmd and cmd[0] == sys.executable else cmd)


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(cmd: Sequence[str], log: Path) -> tuple[int, float, str, float]:
    """Run ``cmd`` (its output to ``log`` and this terminal's stderr).

    Returns the exit status, wall seconds, the output and the CPU seconds of the command
    (with its worker processes): on a shared machine the wall time depends on the others'
    load, the CPU time much less.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"$ {show(cmd)}")
    cpu = _children_cpu()
    t = time.perf_counter()
    lines = []
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            fh.flush()
            lines.append(line)
            sys.stderr.write(line)
        status = proc.wait()
    return status, time.perf_counter() - t, "".join(lines), _children_cpu() - cpu


# --------------------------------------------------------------------------- weights


def ensure_weights(plan: Plan, env: str, threads: int) -> tuple[Path, dict | None]:
    """The tuned weights of ``env`` (seed 0), made with offline_learning's stages when absent."""
    ol = _offline_learning()
    path = ol.tuned_weights(plan.weights_dir, env, 0)
    if path.is_file():
        return path.resolve(), None
    import torch

    say(f"{env}: no tuned weights at {path}; tuning them (offline_learning, seed 0)")
    torch.set_num_threads(max(1, threads))
    args = ol.parse_args(["--env", env, "--seeds", "0", "--arms", "", "--out", str(plan.weights_dir)])
    res, path = ol.tune_reward(args, 0)
    a = res.agreement["tuned"]
    say(f"{env}: Spearman(reward, -goal distance) {a['spearman']:.3f} (caption-balanced held-out, n={a['n']})")
    return path.resolve(), res.agreement


# --------------------------------------------------------------------------- results


def read_sweep(folder: Path) -> dict:
    """``sweep.json`` of a sweep folder (the sweep module's record of every job)."""
    path = folder / "sweep.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist: the sweep wrote no record (see its log)")
    return json.loads(path.read_text(encoding="utf-8"))


def final_steps(sweep: dict) -> dict[int, int]:
    """Agent seed → the step of its final evaluation, from the jobs' results (where recorded)."""
    steps: dict[int, int] = {}
    for job in sweep.get("jobs", []):
        seed = int(job["swept"].get("seed", 0))
        result = job.get("result") or {}
        if "steps" in result and result["steps"] is not None:
            steps.setdefault(seed, int(result["steps"]))
    return steps


def random_returns(env: str, seeds: Sequence[int], steps: dict[int, int], budget: int, episodes: int) -> list[float]:
    """Mean ground-truth return of a uniform-random policy per agent seed, on that seed's evaluation episodes."""
    import numpy as np

    ol = _offline_learning()
    gym_id = ol.ENVS[env]["gym_id"]
    return [
        float(np.mean(ol.evaluate_policy(None, gym_id, episodes, s + EVAL_SEED_OFFSET + steps.get(s, budget))))
        for s in seeds
    ]


def study_rows(folder: Path) -> list[dict[str, str]]:
    """The ``gt_return`` rows of the study's ``study.csv``."""
    path = folder / "study.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r.get("metric", "gt_return") == "gt_return"]


def rows_from_sweep(sweep: dict) -> dict[str, list[float]]:
    """Reward preset → the final ground-truth returns of its finished jobs (when the study wrote none)."""
    out: dict[str, list[float]] = {}
    for job in sweep.get("jobs", []):
        final = ((job.get("result") or {}).get("final_eval") or {}).get("gt_return")
        if job.get("state") == "done" and final is not None:
            out.setdefault(str(job["swept"].get("reward")), []).append(float(final))
    return out


@dataclass
class Row:
    env: str
    arm: str
    iqm: float
    low: float
    high: float
    n: int
    source: str


def env_rows(env: str, folder: Path, sweep: dict, random: list[float]) -> list[Row]:
    """The table's rows of one env: each reward from the study (or the sweep record), and random."""
    rows = []
    found = study_rows(folder)
    if found:
        for r in found:
            arm = r.get("reward") or r.get("reward.name") or "?"
            rows.append(Row(env, ARMS.get(arm, arm), float(r["iqm"]), float(r["ci_low"]), float(r["ci_high"]),
                            int(float(r["n"])), "study.csv"))
    else:
        for arm, values in rows_from_sweep(sweep).items():
            rows.append(Row(env, ARMS.get(arm, arm), *iqm_interval(values), len(values), "sweep.json"))
    rows.append(Row(env, ARMS["random"], *iqm_interval(random), len(random), "here"))
    return rows


def print_table(rows: Sequence[Row], times: dict[str, float]) -> None:
    print(f"{'env':<12} {'arm':<18} {'IQM gt return':>14} {'95% interval':>22} {'n':>3}  {'from':<10} sweep wall")
    for r in rows:
        interval = f"[{r.low:.1f}, {r.high:.1f}]"
        wall = f"{times[r.env]:.0f} s" if r.env in times and r.arm == ARMS["tiny"] else ""
        print(f"{r.env:<12} {r.arm:<18} {r.iqm:>14.1f} {interval:>22} {r.n:>3}  {r.source:<10} {wall}")


# --------------------------------------------------------------------------- modes


FINAL_RE = re.compile(r"final evaluation: ground-truth return ([-+0-9.eE]+)")


def run_single(plan: Plan) -> int:
    """Each arm once per env without ``-m``: wall time and final ground-truth return."""
    print(f"{'env':<12} {'arm':<13} {'steps':>7} {'wall s':>7} {'cpu s':>7} {'final gt return':>16}")
    failed = 0
    for env in plan.envs:
        for arm in plan.rewards:
            cmd = single_command(plan, env, arm, plan.seeds[0])
            status, secs, output, cpu = run_timed(cmd, plan.out / "logs" / f"single-{env}-{arm}.log")
            found = FINAL_RE.findall(output)
            ret = found[-1] if found else "?"
            failed += status != 0
            print(f"{env:<12} {arm:<13} {plan.budgets[env]['total_steps']:>7} {secs:>7.0f} {cpu:>7.0f} {ret:>16}"
                  + ("" if status == 0 else f"  (exit {status})"), flush=True)
    return 1 if failed else 0


def run_sweep(plan: Plan, env: str, launcher: str, seeds: Sequence[int], run_name: str) -> tuple[Path, float, dict]:
    """One sweep of ``env``; its folder, wall seconds and ``sweep.json``."""
    cmd = sweep_command(plan, env, launcher, seeds, run_name)
    status, secs, _, _ = run_timed(cmd, plan.out / "logs" / f"sweep-{run_name}.log")
    folder = plan.out / "multirun" / run_name
    if status != 0:
        say(f"{run_name}: the sweep exited with {status} after {secs:.0f} s (failed jobs are listed in sweep.json)")
    return folder, secs, read_sweep(folder)


def run_study(plan: Plan) -> int:
    """Every env's sweep, random baseline and study; the table; the launcher comparison."""
    rows: list[Row] = []
    times: dict[str, float] = {}
    record: dict[str, Any] = {"launcher": plan.launcher, "parallel": plan.parallel, "seeds": plan.seeds,
                              "budgets": plan.budgets, "envs": {}}
    for env in plan.envs:
        folder, secs, sweep = run_sweep(plan, env, plan.launcher, plan.seeds, env)
        times[env] = secs
        budget = plan.budgets[env]["total_steps"]
        random = random_returns(env, plan.seeds, final_steps(sweep), budget, plan.eval_episodes)
        status, _, _, _ = run_timed([sys.executable, "-m", "vlmrm.study", str(folder)],
                                 plan.out / "logs" / f"study-{env}.log")
        if status != 0:
            say(f"{env}: vlmrm.study exited with {status}; the rewards' rows are computed from sweep.json")
        rows += env_rows(env, folder, sweep, random)
        record["envs"][env] = {"sweep": str(folder), "wall_s": secs, "random_returns": random,
                               "command": show(sweep_command(plan, env, plan.launcher, plan.seeds, env))}
    print_table(rows, times)
    total = sum(times.values())
    print(f"sweeps under launcher={plan.launcher} (parallel {plan.parallel}): {total:.0f} s wall in all")
    record["rows"] = [r.__dict__ for r in rows]
    record["wall_s"] = total
    if plan.compare_seeds is not None:
        record["compare"] = compare_launchers(plan, times)
    (plan.out / "showcase.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return 0


def compare_launchers(plan: Plan, times: dict[str, float]) -> dict[str, Any]:
    """The same grid (or ``--compare-seeds``) under ``basic`` and ``plan.launcher``: the wall-time ratio."""
    seeds = plan.compare_seeds or plan.seeds
    other = "basic" if plan.launcher != "basic" else "submitit_local"
    same = list(seeds) == list(plan.seeds)
    walls: dict[str, dict[str, float]] = {plan.launcher: {}, other: {}}
    for env in plan.envs:
        if same:
            walls[plan.launcher][env] = times[env]
        else:
            walls[plan.launcher][env] = run_sweep(plan, env, plan.launcher, seeds, f"{env}-{plan.launcher}")[1]
        walls[other][env] = run_sweep(plan, env, other, seeds, f"{env}-{other}")[1]
    basic, fast = ("basic", plan.launcher) if other == "basic" else (plan.launcher, other)
    print(f"launcher comparison ({len(plan.envs)} envs x 2 rewards x seeds {','.join(map(str, seeds))}):")
    for env in plan.envs:
        b, f = walls[basic][env], walls[fast][env]
        print(f"  {env:<12} basic {b:.0f} s, {fast} {f:.0f} s: ratio {b / f:.2f}")
    b, f = sum(walls[basic].values()), sum(walls[fast].values())
    print(f"wall time basic / {fast}: {b:.0f} s / {f:.0f} s = {b / f:.2f}")
    return {"seeds": list(seeds), "wall_s": walls, "ratio": b / f}


# --------------------------------------------------------------------------- command line


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"error: {what} must be a comma list of integers, got {text!r}") from None
    if not values:
        raise SystemExit(f"error: {what} names no value")
    return values


def _budgets(items: Sequence[str]) -> dict[str, dict[str, int]]:
    budgets = {env: dict(b) for env, b in BUDGETS.items()}
    for item in items:
        env, sep, value = item.partition("=")
        steps, _, every = value.partition(":")
        if not sep or env not in budgets or not steps.isdigit() or (every and not every.isdigit()):
            raise SystemExit(f"error: --budget takes ENV=STEPS[:EVAL_EVERY] with ENV in {sorted(budgets)}, "
                             f"got {item!r}")
        budgets[env]["total_steps"] = int(steps)
        if every:
            budgets[env]["eval_every"] = int(every)
    return budgets


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Budgets (--budget ENV=STEPS[:EVAL_EVERY]): "
        + ", ".join(f"{e}={b['total_steps']}:{b['eval_every']}" for e, b in BUDGETS.items()),
    )
    p.add_argument("--weights-dir", default="runs/showcase-weights",
                   help="tuned weights: <dir>/<env>/seed0/tune-bt/model.safetensors (made when absent)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="agent seeds (comma list)")
    p.add_argument("--envs", default=",".join(BUDGETS), help=f"comma list from {list(BUDGETS)}")
    p.add_argument("--launcher", default="submitit_local", choices=LAUNCHERS)
    p.add_argument("--parallel", type=int, default=2, help="jobs at once (launcher.parallel)")
    p.add_argument("--out", default="runs/showcase", help="sweeps go to <out>/multirun/<env>/")
    p.add_argument("--rewards", default="tiny,ground_truth",
                   help="the swept reward presets (a subset of tiny,ground_truth)")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="episodes of each final evaluation (and of the random policy per seed)")
    p.add_argument("--budget", action="append", default=[], metavar="ENV=STEPS[:EVAL_EVERY]",
                   help="change an env's budget (repeatable)")
    p.add_argument("--compare-launchers", action="store_true",
                   help="also run the grid under launcher=basic and print the wall-time ratio")
    p.add_argument("--compare-seeds", default=None,
                   help="seeds of the launcher comparison (default: --seeds, reusing the main sweeps' times)")
    p.add_argument("--single", action="store_true",
                   help="run each arm once without -m (first seed): wall time and final return")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--threads", type=int, default=1, help="torch threads when tuning missing weights")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ol = _offline_learning()
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    bad = [e for e in envs if e not in BUDGETS or e not in ol.ENVS]
    if bad or not envs:
        raise SystemExit(f"error: unknown env(s) {bad}; --envs takes a comma list from {list(BUDGETS)}")
    if args.parallel < 1 or args.eval_episodes < 1:
        raise SystemExit("error: --parallel and --eval-episodes must be at least 1")
    seeds = _ints(args.seeds, "--seeds")
    rewards = [r.strip() for r in args.rewards.split(",") if r.strip()]
    if not rewards or any(r not in ARMS or r == "random" for r in rewards):
        raise SystemExit(f"error: --rewards takes a comma list from tiny,ground_truth, got {args.rewards!r}")
    compare = None
    if args.compare_launchers:
        compare = _ints(args.compare_seeds, "--compare-seeds") if args.compare_seeds else seeds
    plan = Plan(envs=envs, seeds=seeds, budgets=_budgets(args.budget), launcher=args.launcher,
                parallel=args.parallel, out=Path(args.out).resolve(), weights_dir=Path(args.weights_dir),
                eval_episodes=args.eval_episodes, compare_seeds=compare, rewards=rewards)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    for env in envs:
        if args.dry_run:
            plan.weights[env] = ol.tuned_weights(plan.weights_dir, env, 0).resolve()
        else:
            plan.weights[env], _ = ensure_weights(plan, env, args.threads)
    if args.dry_run:
        for env in envs:
            if args.single:
                for arm in plan.rewards:
                    print(show(single_command(plan, env, arm, plan.seeds[0])))
            else:
                print(show(sweep_command(plan, env, plan.launcher, plan.seeds, env)))
                print(show(["python", "-m", "vlmrm.study", str(plan.out / "multirun" / env)]))
        return 0
    plan.out.mkdir(parents=True, exist_ok=True)
    return run_single(plan) if args.single else run_study(plan)


if __name__ == "__main__":
    raise SystemExit(main())
