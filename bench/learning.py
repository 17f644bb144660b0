"""Learning benchmark: rows of (preset, task, algorithm, seed), each one pretraining run scored on its
held-out test episodes, kept as one JSON file under bench/results/ with the commit it ran on; the
table is assembled from those files, so rows can run at different times and on different machines.

    python -m bench.learning run --preset quick --task search-pick --algorithm aawr --seed 0
    python -m bench.learning run --preset quick --task search-pick --algorithm aawr awr bc --seed 0 1 2 --ray
    python -m bench.learning run --preset full --variant framestack --task search-pick --algorithm aawr \\
        --seed 0 -- learner.network.core=framestack
    python -m bench.learning table [--preset quick]      # JSON to stdout, Markdown to bench/results/README.md

A row's file is bench/results/<preset>[-<variant>]/<task>/<algorithm>-seed<seed>.json; a variant is
a preset plus the overrides after `--`. The table gives per row its per-seed success with Wilson
intervals and, across seeds, the interquartile mean with a stratified bootstrap interval (rliable's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

from apsconfig import load_config, to_dict
from policies.metrics import bootstrap_interval, iqm, wilson_interval
from policies.runtime import relaunch_with_tcmalloc
from sim.pretrain import PRESETS, PretrainConfig, RunResult, run_one

RESULTS = Path(__file__).parent / "results"


def commit() -> str:
    """The commit the code ran on, with '+dirty' when the work tree had changes."""
    root = Path(__file__).parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def numerics() -> dict[str, str | None]:
    """What picks the CPU kernels, hence the floats: a run moves when any of these differ."""
    import torch

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **{name: os.environ.get(name) for name in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")},
    }


def row_path(results: Path, preset: str, variant: str, task: str, algorithm: str, seed: int) -> Path:
    return results / (f"{preset}-{variant}" if variant else preset) / task / f"{algorithm}-seed{seed}.json"


def row_record(
    result: RunResult, cfg: PretrainConfig, preset: str, variant: str, overrides: list[str]
) -> dict:
    low, high = wilson_interval(result.test_successes, result.test_episodes)
    return {
        "preset": preset,
        "variant": variant,
        "overrides": overrides,
        "task": cfg.task,
        "algorithm": result.algorithm,
        "seed": result.seed,
        "test_success": round(result.test_success, 4),
        "test_successes": result.test_successes,
        "test_episodes": result.test_episodes,
        "wilson95": [round(low, 4), round(high, 4)],
        "demo_success": round(result.demo_success, 4),
        "updates": result.updates,
        "online_steps": result.online_steps,
        "checkpoint_updates": result.checkpoint_updates,
        "wall_min": round(result.wall_s / 60, 2),
        "stopped": result.stopped,
        "curve": [dataclasses.asdict(p) for p in result.curve],
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "threads": cfg.threads,
        "numerics": numerics(),
        "config": to_dict(dataclasses.replace(cfg, algorithms=[result.algorithm], seeds=[result.seed])),
    }


def run_rows(args: argparse.Namespace) -> int:
    jobs = [
        (task, algorithm, seed) for task, algorithm, seed in product(args.task, args.algorithm, args.seed)
    ]
    if args.missing:
        jobs = [job for job in jobs if not row_path(args.results, args.preset, args.variant, *job).is_file()]
    run_dir = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    for task in dict.fromkeys(task for task, _, _ in jobs):
        cfg = load_config(PretrainConfig, PRESETS / f"{args.preset}.yaml", [*args.overrides, f"task={task}"])
        cfg = dataclasses.replace(cfg, out_dir=str(run_dir))
        task_jobs = [(algorithm, seed) for t, algorithm, seed in jobs if t == task]
        if args.ray is not None:
            from sim.sweep import run_on_ray

            results = run_on_ray(cfg, task_jobs, run_dir / task, args.ray)
        else:
            results = (run_one(cfg, algorithm, seed, run_dir / task) for algorithm, seed in task_jobs)  # type: ignore[misc]
        for result in results:
            path = row_path(args.results, args.preset, args.variant, task, result.algorithm, result.seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps(row_record(result, cfg, args.preset, args.variant, args.overrides), indent=1)
            )
            print(f"{path}: {result.test_successes}/{result.test_episodes}", flush=True)
    return 0


def table(rows: list[dict]) -> dict:
    """Per (preset, variant, task, algorithm): per-seed figures and the IQM across seeds."""
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["preset"], row["variant"], row["task"], row["algorithm"]), []).append(row)
    entries = []
    for (preset, variant, task, algorithm), members in sorted(groups.items()):
        members.sort(key=lambda r: r["seed"])
        rates = [r["test_success"] for r in members]
        entry = {
            "preset": preset, "variant": variant, "task": task, "algorithm": algorithm,
            "seeds": [r["seed"] for r in members],
            "per_seed": {r["seed"]: [r["test_successes"], r["test_episodes"], r["wilson95"]]
                         for r in members},
            "iqm": round(iqm(rates), 4),
            "iqm_ci95": [round(v, 4) for v in bootstrap_interval([rates])] if len(rates) > 1 else None,
            "demo_success": round(sum(r["demo_success"] for r in members) / len(members), 4),
            "wall_min_per_run": round(max(r["wall_min"] for r in members), 1),
            "commits": sorted({r["commit"][:12] for r in members}),
        }  # fmt: skip
        entries.append(entry)
    return {"bench": "learning", "rows": entries}


def markdown(report: dict) -> str:
    lines = [
        "# Learning benchmark (assembled by `python -m bench.learning table` from the JSON rows here)",
        "",
        "Success on each run's held-out test episodes; IQM over seeds with a 95% stratified bootstrap"
        " interval.",
        "",
        "| preset | task | algorithm | seeds | per seed: success (Wilson 95%) | IQM [95% CI] | demos succeed "
        "| longest run | commits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in report["rows"]:
        per_seed = "; ".join(
            f"{seed}: {s / n:.0%} ({low:.0%}-{high:.0%})"
            for seed, (s, n, (low, high)) in e["per_seed"].items()
        )
        ci = f" [{e['iqm_ci95'][0]:.0%}-{e['iqm_ci95'][1]:.0%}]" if e["iqm_ci95"] else ""
        name = e["preset"] + (f" ({e['variant']})" if e["variant"] else "")
        cells = [
            name, e["task"], e["algorithm"], str(len(e["seeds"])), per_seed, f"{e['iqm']:.0%}{ci}",
            f"{e['demo_success']:.0%}", f"{e['wall_min_per_run']} min", ", ".join(e["commits"]),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def show_table(args: argparse.Namespace) -> int:
    rows = [json.loads(p.read_text()) for p in sorted(args.results.glob("*/*/*.json"))]
    rows = [r for r in rows if args.preset is None or r["preset"] == args.preset]
    report = table(rows)
    (args.results / "README.md").write_text(markdown(report))
    print(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rows = commands.add_parser("run", help="run rows and write their JSON files")
    rows.add_argument("--preset", default="quick", choices=sorted(p.stem for p in PRESETS.glob("*.yaml")))
    rows.add_argument("--variant", default="", help="a name for the overrides after --")
    rows.add_argument("--task", nargs="+", default=["search-pick"])
    rows.add_argument("--algorithm", nargs="+", default=["aawr", "awr", "bc"])
    rows.add_argument("--seed", nargs="+", type=int, default=[0, 1, 2])
    rows.add_argument("--missing", action="store_true", help="only rows without a file yet")
    rows.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="rows as Ray tasks")
    rows.add_argument("--out", default="runs/bench-learning", help="where the runs' checkpoints go")
    rows.add_argument("overrides", nargs="*", help="key=value settings for every row (the variant)")
    shown = commands.add_parser("table", help="assemble the table from the JSON rows")
    shown.add_argument("--preset", default=None)
    for command in (rows, shown):
        command.add_argument("--results", type=Path, default=RESULTS, help="the folder of row files")
    args = parser.parse_args(argv)
    if args.command == "run":
        relaunch_with_tcmalloc("bench.learning", argv)
        os.environ.setdefault("MUJOCO_GL", "egl")
        if args.overrides and not args.variant:
            parser.error("overrides make a variant: name it with --variant")
        return run_rows(args)
    return show_table(args)


if __name__ == "__main__":
    raise SystemExit(main())
