"""Learner speed at a pretraining preset: gradient updates/s per algorithm and single-step inference
latency (p50/p99) of the policy runner, on real demos of the preset's task. Prints JSON.

    python -m bench.learner [--preset quick] [--updates 20] [--steps 500]

Targets (issue 3): >= 2 updates/s at the quick preset; p99 <= 2 ms per inference step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import numpy as np
import torch

import sim
from apsconfig import load_config
from policies.checkpoint import PolicyRunner
from policies.learner import Learner
from policies.networks import ObsSpec
from policies.replay import SequenceReplay
from policies.runtime import set_torch_threads
from sim.pretrain import PRESETS, PretrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    cfg = load_config(PretrainConfig, PRESETS / f"{args.preset}.yaml")
    set_torch_threads("train")
    demos = sim.collect_demos(cfg.task, 8, seed=0, task_config=cfg.env, demo_config=cfg.demo)
    spec = ObsSpec.from_episode(demos[0])
    rng = np.random.default_rng(0)
    lc = cfg.learner
    replay = SequenceReplay(lc.seq_len, lc.burn_in)
    replay.extend(demos)

    updates_per_s = {}
    for algorithm in ("aawr", "aawr-state", "awr", "bc"):
        torch.manual_seed(0)
        learner = Learner(spec, dataclasses.replace(lc, algorithm=algorithm))
        batches = [replay.sample(lc.batch_size, rng) for _ in range(args.updates + 2)]
        for batch in batches[:2]:  # warm-up: allocator and kernels
            learner.update(batch)
        start = time.perf_counter()
        for batch in batches[2:]:
            learner.update(batch)
        updates_per_s[algorithm] = round(args.updates / (time.perf_counter() - start), 2)

    set_torch_threads("act")  # as in the policy node
    runner = PolicyRunner.from_learner(learner, cfg.task)
    runner.reset()
    latencies = []
    for t in range(args.steps):
        if t % len(demos[0]) == 0:
            runner.reset()
        obs = {k: v[t % len(demos[0])] for k, v in demos[0].onboard.items()}
        start = time.perf_counter()
        runner.act(obs)
        latencies.append((time.perf_counter() - start) * 1e3)

    print(json.dumps({
        "bench": "learner",
        "preset": args.preset,
        "task": cfg.task,
        "image_size": cfg.env.image_size,
        "batch": f"{lc.batch_size} sequences x ({lc.burn_in} burn-in + {lc.seq_len}) steps",
        "core": lc.network.core,
        "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", ""),
        "updates_per_s": updates_per_s,
        "inference_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 3),
            "p99": round(float(np.percentile(latencies, 99)), 3),
            "steps": args.steps,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
