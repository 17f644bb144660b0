"""Memory-core speed: learner updates/s with a BMRU core (parallel scan) against a GRU (torch's native
loop over time steps), on synthetic T-maze batches of sequences of 50 and 500 steps, plus the core
alone (forward + backward). Prints JSON.

    python -m bench.memory [--lengths 50 500] [--rounds 5] [--updates 3] [--cores gru bmru] [--threads 1]

The learner is the T-maze preset's (core_hidden 32, batch 32 sequences, AAWR); a batch holds
`length` trained steps and no burn-in. Success on the T-maze comes from `bench.learning` rows (see
docs/diagnostics.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from apsconfig import load_config
from policies.learner import Learner
from policies.networks import KeySpec, ObsSpec
from policies.replay import SequenceBatch
from sim.pretrain import PRESETS, PretrainConfig

SPEC = ObsSpec(  # the T-maze's
    onboard={"sensors": KeySpec((3,), "float32")},
    privileged={k: KeySpec((1,), "float32") for k in ("belief", "goal", "position")},
    action_dim=2,
)


def synthetic_batch(size: int, length: int, rng: np.random.Generator) -> SequenceBatch:
    """Random T-maze-shaped windows of `length` trained steps (values do not change the compute)."""

    def part(keys: dict[str, KeySpec]) -> dict[str, np.ndarray]:
        shapes = {k: (size, length + 1, *s.shape) for k, s in keys.items()}
        return {k: rng.uniform(-1, 1, shape).astype(np.float32) for k, shape in shapes.items()}

    return SequenceBatch(
        onboard=part(SPEC.onboard),
        privileged=part(SPEC.privileged),
        action=rng.uniform(-1, 1, (size, length, SPEC.action_dim)).astype(np.float32),
        reward=np.zeros((size, length), np.float32),
        terminated=np.zeros((size, length), np.float32),
        mask=np.ones((size, length), np.float32),
        episode=np.zeros(size, np.int64),
        start=np.zeros(size, np.int64),
    )


def rate(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up: allocator and kernels
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--cores", nargs="+", default=["gru", "bmru"])
    parser.add_argument("--updates", type=int, default=3, help="updates timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = load_config(PretrainConfig, PRESETS / "tmaze.yaml").learner
    rng = np.random.default_rng(0)

    results: dict[str, dict[str, dict[str, float]]] = {core: {} for core in args.cores}
    for length in args.lengths:
        steps: dict[str, dict[str, Callable[[], object]]] = {}
        for core in args.cores:
            config = dataclasses.replace(
                preset,
                algorithm="aawr",
                network=dataclasses.replace(preset.network, core=core),
                seq_len=length,
                burn_in=0,
            )
            torch.manual_seed(0)
            learner = Learner(SPEC, config)
            batch = synthetic_batch(config.batch_size, length, rng)
            recurrent = learner.actor.history.core
            inputs = torch.randn(config.batch_size, length, recurrent.in_dim)

            def core_pass(recurrent=recurrent, inputs=inputs) -> None:
                y, _ = recurrent(inputs, recurrent.initial_state(inputs.shape[0]))
                y.sum().backward()

            steps[core] = {
                "updates": lambda learner=learner, batch=batch: learner.update(batch),
                "core": core_pass,
            }
        # Rounds alternate between the cores, so a change in the machine's load hits them alike; the
        # median round is reported.
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for core, timed in steps.items():
                rates.setdefault((core, "updates"), []).append(rate(timed["updates"], args.updates))
                rates.setdefault((core, "core"), []).append(rate(timed["core"], 3 * args.updates))
        for core in args.cores:
            results[core][str(length)] = {
                "updates_per_s": round(float(np.median(rates[core, "updates"])), 2),
                "core_fwd_bwd_per_s": round(float(np.median(rates[core, "core"])), 1),
            }

    print(json.dumps({
        "bench": "memory",
        "batch": f"{preset.batch_size} sequences x length steps, no burn-in; T-maze preset networks",
        "core_hidden": preset.network.core_hidden,
        "threads": args.threads,
        "timing": f"median of {args.rounds} alternating rounds of {args.updates} updates "
        f"(and {3 * args.updates} core passes)",
        "results": results,
        "bmru_speedup": {
            n: round(results["bmru"][n]["updates_per_s"] / results["gru"][n]["updates_per_s"], 2)
            for n in map(str, args.lengths)
        } if {"gru", "bmru"} <= set(results) else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
