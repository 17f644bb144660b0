"""Sim throughput: env steps per second for each task, rendering its onboard cameras, printed as JSON.

    MUJOCO_GL=egl python -m bench.sim [--image-size 84] [--steps 400] [--num-envs 8] [--num-workers 2]

"single": one env in this process; "vectorised": `sim.vector.rollout` over num_envs envs in
num_workers processes with a batched random policy (episode resets included); with
`--compare-gymnasium`, also gymnasium's own `AsyncVectorEnv` (shared memory, one process per env, the
same seeds and episodes), the library `sim.vector` was measured against. Target: >= 150 steps/s per
core at 84x84 with shadows off.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time

import numpy as np

import sim
from sim.config import TaskConfig
from sim.vector import VectorEnv, rollout


class RandomPolicy:
    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim
        self.rng = np.random.default_rng(0)

    def reset(self, num_envs: int, seeds: list[int] | None = None) -> None:
        self.num_envs = num_envs

    def act(self, obs: dict) -> np.ndarray:
        return self.rng.uniform(-1, 1, (self.num_envs, self.action_dim)).astype(np.float32)


def single(task: str, config: TaskConfig, steps: int) -> float:
    env = sim.make(task, config)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        if terminated or truncated:
            env.reset(seed=i)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def vectorised(task: str, config: TaskConfig, steps: int, num_envs: int, num_workers: int) -> float:
    with VectorEnv(task, num_envs, config, num_workers=num_workers) as envs:
        policy = RandomPolicy(envs.single_action_space.shape[0])
        rollout(envs, policy, list(range(num_envs)))  # warm-up: worker imports, GL contexts
        done, seed = 0, num_envs
        start = time.perf_counter()
        while done < steps:
            episodes = rollout(envs, policy, list(range(seed, seed + num_envs)))
            done += sum(len(e) for e in episodes)
            seed += num_envs
        return done / (time.perf_counter() - start)


def gymnasium_async(task: str, config: TaskConfig, steps: int, num_envs: int) -> float:
    """The same rollouts through gymnasium's AsyncVectorEnv: one process per env, shared memory."""
    import gymnasium as gym

    envs = gym.vector.AsyncVectorEnv(
        [functools.partial(sim.make, task, config)] * num_envs,
        shared_memory=True,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        context="spawn",  # forked children deadlock on the parent's EGL context
    )
    policy = RandomPolicy(envs.single_action_space.shape[0])
    policy.reset(num_envs, [])

    def one_episode_each(seed: int) -> int:
        envs.reset(seed=list(range(seed, seed + num_envs)))
        done, stepped = np.zeros(num_envs, bool), 0
        while not done.all():  # every env steps until the last ends (finished ones autoreset)
            _, _, terminated, truncated, _ = envs.step(policy.act({}))
            stepped += int((~done).sum())
            done |= terminated | truncated
        return stepped

    try:
        one_episode_each(0)  # warm-up, as for ours
        done, seed = 0, num_envs
        start = time.perf_counter()
        while done < steps:
            done += one_episode_each(seed)
            seed += num_envs
        return done / (time.perf_counter() - start)
    finally:
        envs.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(sim.TASK_NAMES))
    parser.add_argument("--compare-gymnasium", action="store_true", help="also time AsyncVectorEnv")
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    config = TaskConfig(image_size=args.image_size)
    results = {}
    for task in args.tasks.split(","):
        probe = sim.make(task, config)
        cameras = list(getattr(probe, "onboard_cameras", ()))
        probe.close()
        results[task] = {
            "cameras": cameras,
            "single_steps_per_s": round(single(task, config, args.steps), 1),
            "vectorised_steps_per_s": round(
                vectorised(task, config, args.steps, args.num_envs, args.num_workers), 1
            ),
        }
        if args.compare_gymnasium:
            rate = gymnasium_async(task, config, args.steps, args.num_envs)
            results[task]["gymnasium_async_steps_per_s"] = round(rate, 1)
    report = {
        "image_size": args.image_size,
        "num_envs": args.num_envs,
        "num_workers": args.num_workers,
        "cpu_count": os.cpu_count(),
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "machine": platform.processor() or platform.machine(),
        "tasks": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
