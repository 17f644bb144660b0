"""Learning benchmark (issue 3): AAWR vs AWR vs BC on search-pick and camouflage-pick from the same
scripted sub-optimal demos and the same budget, plus AAWR-state and a frame-stack (non-recurrent)
AAWR on search-pick. Seeded; prints one JSON object and writes it to <out>/learning.json.

    python -m bench.learning                          # the `full` preset (about 3 h per seed, 2-core CPU)
    python -m bench.learning --preset quick --tasks search-pick --no-ablations

Each row gives the success rate on held-out seeds with its Wilson 95% interval and the budget
(demos, updates, online env steps, wall time); `targets` says per task whether issue 3's figures
hold (AAWR >= 80%, AWR and BC each at least 25 points below AAWR).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
from pathlib import Path

from apsconfig import load_config
from policies.metrics import wilson_interval
from policies.runtime import set_torch_threads
from sim.pretrain import PRESETS, PretrainConfig, RunResult, run


def summarise(label: str, results: list[RunResult], cfg: PretrainConfig) -> dict:
    successes, trials = sum(r.successes for r in results), sum(r.trials for r in results)
    low, high = wilson_interval(successes, trials)
    return {
        "variant": label,
        "success": round(successes / trials, 3),
        "successes": successes,
        "ci95": [round(low, 3), round(high, 3)],
        "trials": trials,
        "updates": max(r.updates for r in results),
        "online_env_steps": max(r.online_steps for r in results),
        "wall_min": round(sum(r.wall_s for r in results) / 60 / len(cfg.seeds), 1),
        "stopped_early": [r.stopped for r in results if r.stopped],
    }


def targets(counts: dict[str, tuple[int, int]]) -> dict[str, bool | None]:
    """Issue 3's figures, from (successes, trials) per variant; None where a variant did not run.
    Compared in whole successes, so float rounding cannot flip an exact 25-point gap."""

    def at_least(variant: str, fraction: float) -> bool | None:
        if variant not in counts:
            return None
        successes, trials = counts[variant]
        return 100 * successes >= round(100 * fraction) * trials

    def points_below_aawr(variant: str, points: int) -> bool | None:
        if "aawr" not in counts or variant not in counts:
            return None
        (a, n), (b, m) = counts["aawr"], counts[variant]
        return 100 * (a * m - b * n) >= points * n * m  # a/n - b/m >= points/100

    return {
        "aawr_at_least_80": at_least("aawr", 0.8),
        "awr_25_points_below_aawr": points_below_aawr("awr", 25),
        "bc_25_points_below_aawr": points_below_aawr("bc", 25),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--tasks", nargs="+", default=["search-pick", "camouflage-pick"])
    parser.add_argument("--no-ablations", action="store_true", help="skip AAWR-state and frame-stack")
    parser.add_argument("--out", default="runs/bench-learning")
    parser.add_argument("overrides", nargs="*", help="key=value settings for every run")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    set_torch_threads("train")
    report: dict = {"bench": "learning", "preset": args.preset, "machine": f"{platform.machine()}, "
                    f"{os.cpu_count()} cores", "tasks": {}}  # fmt: skip
    for task in args.tasks:
        overrides = [*args.overrides, f"task={task}"]
        cfg = load_config(PretrainConfig, PRESETS / f"{args.preset}.yaml", overrides)
        cfg = dataclasses.replace(cfg, out_dir=args.out)
        variants = [("", cfg)]
        if task == "search-pick" and not args.no_ablations:
            variants.append(("", dataclasses.replace(cfg, algorithms=["aawr-state"])))
            framestack = dataclasses.replace(cfg.learner.network, core="framestack")
            learner = dataclasses.replace(cfg.learner, network=framestack)
            variants.append(("-framestack", dataclasses.replace(cfg, algorithms=["aawr"], learner=learner)))
        rows, demo_success = [], []
        for suffix, variant in variants:
            results, _ = run(variant)
            demo_success += [r.demo_success for r in results]  # every variant has the same seeded demos
            for algorithm in variant.algorithms:
                runs = [r for r in results if r.algorithm == algorithm]
                rows.append(summarise(algorithm + suffix, runs, variant))
        counts = {row["variant"]: (row["successes"], row["trials"]) for row in rows}
        report["tasks"][task] = {
            "image_size": cfg.env.image_size,
            "max_episode_steps": cfg.env.max_episode_steps,
            "demos": cfg.num_demos,
            "demo_success": round(sum(demo_success) / len(demo_success), 3),
            "demo_config": dataclasses.asdict(cfg.demo),
            "network": dataclasses.asdict(cfg.learner.network),
            "seeds": cfg.seeds,
            "eval_episodes_per_seed": cfg.eval_episodes,
            "results": rows,
            "targets": targets(counts),
        }
        # written after every task, so hours of work survive a later failure
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "learning.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
