"""Sweeps on Ray: every (algorithm, seed) run of aps-pretrain as one Ray task, on this machine or on a
cluster, so a lab runs the full benchmark in the time of its longest run.

    aps-pretrain --preset quick seeds=[0,1,2] --ray                 # local Ray, all cores
    aps-pretrain --preset full seeds=[0,1,2] --ray ray://head:10001 # a cluster (the stack installed
                                                                    # on every node)

A task runs `sim.pretrain.run_one` in a scratch folder wherever Ray places it, with the job's own
thread count (`threads`, which the floats depend on), so a seed's result equals the sequential
job's; it sends its files (checkpoints, TensorBoard) back with its result, so no shared file
system is assumed. Each task reserves `threads` CPUs.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from tqdm import tqdm

from apsconfig import load_config, to_dict
from sim.pretrain import PretrainConfig, RunResult, run_one


def run_remote(settings: dict, algorithm: str, seed: int) -> tuple[dict, dict[str, bytes]]:
    """The body of one Ray task: a run in a scratch folder; its result and files (path -> bytes)."""
    cfg = load_config(PretrainConfig, settings)
    with tempfile.TemporaryDirectory(prefix="aps-sweep-") as scratch:
        result = run_one(cfg, algorithm, seed, Path(scratch), progress=False)  # type: ignore[arg-type]
        files = {str(p.relative_to(scratch)): p.read_bytes() for p in Path(scratch).rglob("*") if p.is_file()}
        result.checkpoint = str(Path(result.checkpoint).relative_to(scratch))
    return dataclasses.asdict(result), files


def run_on_ray(
    cfg: PretrainConfig, jobs: list[tuple[str, int]], run_dir: Path, address: str = "local"
) -> list[RunResult]:
    """Results in the order of `jobs`, with every task's files written under run_dir."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        env = {"env_vars": {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}}
        if address == "local":
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=env, log_to_driver=False)
        else:
            ray.init(address=address, runtime_env=env)
    try:
        task = ray.remote(num_cpus=cfg.threads or 1)(run_remote)
        pending = {task.remote(to_dict(cfg), algorithm, seed): (algorithm, seed) for algorithm, seed in jobs}
        results: dict[tuple[str, int], RunResult] = {}
        with tqdm(total=len(jobs), desc="sweep", unit="run", dynamic_ncols=True) as bar:
            while pending:
                (done,), _ = ray.wait(list(pending), num_returns=1)
                data, files = ray.get(done)
                for relative, content in files.items():
                    (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
                    (run_dir / relative).write_bytes(content)
                result = RunResult.from_dict({**data, "checkpoint": str(run_dir / data["checkpoint"])})
                results[pending.pop(done)] = result
                bar.update(1)
                bar.write(f"  {result.algorithm} seed {result.seed}: test success "
                          f"{result.test_successes}/{result.test_episodes}")  # fmt: skip
        return [results[job] for job in jobs]
    finally:
        if started_here:
            ray.shutdown()
