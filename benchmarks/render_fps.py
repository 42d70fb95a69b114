"""Rendering throughput of the CLIP-friendly envs: env steps per second with a frame each.

    MUJOCO_GL=egl python benchmarks/render_fps.py --env vlmrm/Humanoid-v0 --size 224 --steps 500
    python benchmarks/render_fps.py --env vlmrm/CartPole-v0,vlmrm/MountainCarContinuous-v0 \
        --renderer numpy,pygame --steps 3000

Steps a random policy and renders after every step (what training with a CLIP reward
does), and the same without rendering, in one process; prints both rates and their ratio.
On a GPU machine ``MUJOCO_GL=egl`` renders on the GPU; on a CPU machine through Mesa.
``--renderer`` times the classic-control envs with each renderer (the NumPy rasteriser, which
memoises shapes from their second appearance, and pygame), one after the other per env.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def rate(env, steps: int, render: bool) -> float:
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if render:
            frame = env.render()
            assert frame is not None and frame.ndim == 3
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="vlmrm/Humanoid-v0", help="gymnasium id(s), comma-separated")
    p.add_argument("--size", type=int, default=224, help="frame width and height")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--renderer", default="",
                   help="classic-control renderers to compare, comma-separated: numpy, pygame (default: the env's)")
    args = p.parse_args(argv)

    import gymnasium as gym
    import torchvision  # noqa: F401 - before any MuJoCo EGL context (see vlmrm.envs)

    import vlmrm.envs  # noqa: F401 - registers the vlmrm/ ids

    print(f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}")
    print(f"{'env':<32} {'renderer':>8} {'size':>5} {'steps/s render':>15} {'steps/s bare':>13} "
          f"{'render share':>12}")
    classic = ("vlmrm/CartPole-v0", "vlmrm/MountainCarContinuous-v0")
    for env_id in args.env.split(","):
        for renderer in (args.renderer.split(",") if args.renderer and env_id in classic else [""]):
            kwargs = {"width": args.size, "height": args.size} if env_id.startswith("vlmrm/") else {}
            if renderer:
                kwargs["renderer"] = renderer
            env = gym.make(env_id, render_mode="rgb_array", **kwargs)
            try:
                rate(env, 20, True)  # warm-up: the GL context, shaders, textures
                with_frames = rate(env, args.steps, True)
                bare = rate(env, args.steps, False)
            finally:
                env.close()
            print(f"{env_id:<32} {renderer or '-':>8} {args.size:>5} {with_frames:15.1f} {bare:13.1f} "
                  f"{1 - with_frames / bare:11.1%}")


if __name__ == "__main__":
    main()
