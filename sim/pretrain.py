"""aps-pretrain: scripted demos in MuJoCo -> offline AAWR (and baselines) -> online in vectorised sims.

A thin driver of the trainer (`policies.trainer`): for every (algorithm, seed) it collects the seed's
scripted demos, trains offline, then runs online rounds in vectorised sims, validating on fixed
validation episodes along the way (the learning curve), and finally scores the chosen checkpoint on
held-out test episodes that nothing else uses. Every run is one single-process job; `--ray` runs
them as Ray tasks (`sim.sweep`) with the same per-seed results.

    aps-pretrain --preset quick                      # the README's main job
    aps-pretrain --preset full task=camouflage-pick seeds=[0,1,2] --ray
    aps-pretrain --config my.yaml learner.network.core=lstm
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

import sim
from apsconfig import ConfigError, config_help, load_config, save_config
from policies.checkpoint import PolicyRunner, load_policy
from policies.config import ActionSampling, Algorithm
from policies.episodes import Episode, EpisodeDataset
from policies.learner import NonFiniteLossError
from policies.metrics import bootstrap_interval, iqm, wilson_interval
from policies.networks import ObsSpec
from policies.runtime import relaunch_with_tcmalloc
from policies.trainer import Trainer, TrainerConfig
from sim.config import DemoConfig, TaskConfig
from sim.seeds import held_out_seed, online_seed, validation_seed
from sim.vector import VectorEnv, rollout

PRESETS = Path(__file__).parent / "presets"
LOG_EVERY = 50  # updates between TensorBoard points of the training metrics
SERIES = "-series"  # checkpoints/<algorithm>-seed<seed>-series/updates-<k>: keep_checkpoints' folders


@dataclass
class PretrainConfig(TrainerConfig):
    """The trainer's settings (learner, offline updates, online ratio and mix) plus the sim job's."""

    task: str = "search-pick"  # one of sim.TASK_NAMES
    # trained on the same demos and budget
    algorithms: list[Algorithm] = field(default_factory=lambda: ["aawr", "awr", "bc"])
    # one run per seed and algorithm: its own demos and initialisation
    seeds: list[int] = field(default_factory=lambda: [0])
    env: TaskConfig = field(default_factory=TaskConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    num_demos: int = 100  # scripted demonstrations per seed, successful or not
    online_rounds: int = 0  # each round: one episode in each sim, then the updates those steps earned
    num_envs: int = 8  # sims stepped together by one batched policy
    num_workers: int = 2  # processes that hold the sims (0: all in this process)
    eval_episodes: int = 32  # validation episodes per point of the learning curve
    eval_every: int = 500  # updates between validation points
    test_episodes: int = 256  # held-out episodes that score the final checkpoint (the reported figure)
    # the checkpoint scored on the test episodes: the last one, or the best on the validation episodes
    final_checkpoint: Literal["last", "best"] = "last"
    eval_sampling: ActionSampling = "component"  # how the evaluated policy picks actions (ActionMixture.act)
    explore_sampling: ActionSampling = "full"  # how the online rollouts pick actions
    # torch threads per run: the floats, hence the whole run, depend on it, so it is fixed, not the
    # machine's core count (0: every core)
    threads: int = 2
    out_dir: str = "runs"  # each run writes a time-stamped folder here
    # Also keep the initial weights and the checkpoint of every validation point, each in its own
    # folder under checkpoints/<algorithm>-seed<seed>-series/ (`checkpoint_series` lists them): what
    # diagnostics over training read (aps-diagnose probe). Off: only the last and the best are kept.
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in sim.TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(sim.TASK_NAMES)}")
        if not self.algorithms or not self.seeds:
            raise ValueError("need at least one algorithm and one seed")
        counts = (self.num_demos, self.eval_episodes, self.test_episodes, self.num_envs, self.eval_every)
        if min(counts) < 1:
            raise ValueError("num_demos, eval_episodes, test_episodes, num_envs and eval_every must be >= 1")
        if self.num_workers < 0 or self.online_rounds < 0 or self.threads < 0:
            raise ValueError("num_workers, online_rounds and threads must be >= 0")
        if len(set(self.algorithms)) < len(self.algorithms) or len(set(self.seeds)) < len(self.seeds):
            raise ValueError("algorithms and seeds must not repeat (runs would share checkpoint folders)")


@dataclass
class CurvePoint:
    updates: int
    online_steps: int
    successes: int  # on the validation episodes
    trials: int

    @property
    def success(self) -> float:
        return self.successes / self.trials


@dataclass
class RunResult:
    algorithm: str
    seed: int
    test_successes: int  # the chosen checkpoint on the held-out test episodes
    test_episodes: int
    updates: int
    online_steps: int
    wall_s: float
    curve: list[CurvePoint]  # validation success over training
    checkpoint: str  # the chosen (tested) checkpoint
    checkpoint_updates: int  # the updates it had when saved
    demo_success: float  # success rate of the demos it learned from
    stopped: str = ""  # why training stopped early, if it did

    @property
    def test_success(self) -> float:
        return self.test_successes / self.test_episodes

    @staticmethod
    def from_dict(data: dict) -> RunResult:
        return RunResult(**{**data, "curve": [CurvePoint(**p) for p in data["curve"]]})


class RolloutPolicy:
    """Adapts the step runner to `sim.vector.rollout`: it reads only the onboard part, and gives every
    episode its own action draws, seeded by the episode's env seed."""

    def __init__(self, runner: PolicyRunner) -> None:
        self.runner = runner

    def reset(self, num_envs: int, seeds: list[int]) -> None:
        self.runner.reset(num_envs, episode_seeds=seeds)

    def act(self, obs: dict) -> np.ndarray:
        return self.runner.act(obs["onboard"])


def evaluate(runner: PolicyRunner, envs: VectorEnv, seeds: list[int]) -> int:
    """Successes of the policy on these env seeds (episodes in batches of the envs)."""
    policy = RolloutPolicy(runner)
    batches = [seeds[i : i + envs.num_envs] for i in range(0, len(seeds), envs.num_envs)]
    return sum(episode.success for batch in batches for episode in rollout(envs, policy, batch))


def collect_demos(cfg: PretrainConfig, seed: int) -> list[Episode]:
    return sim.collect_demos(cfg.task, cfg.num_demos, seed, cfg.env, cfg.demo, cfg.num_workers)


def run_one(
    cfg: PretrainConfig,
    algorithm: Algorithm,
    seed: int,
    run_dir: Path,
    demos: list[Episode] | None = None,
    envs: VectorEnv | None = None,
    progress: bool = True,
) -> RunResult:
    """One (algorithm, seed) run, a job of its own: the same result whether it runs alone, after
    others in one process (sharing their `demos` and `envs`, which are the same by seed), or as a
    Ray task. Writes `checkpoints/<algorithm>-seed<seed>[-best]` and `tensorboard/<same>` under run_dir."""
    from torch.utils.tensorboard import SummaryWriter

    started = time.perf_counter()
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    demos = demos if demos is not None else collect_demos(cfg, seed)
    own_envs = envs is None
    envs = envs or VectorEnv(cfg.task, cfg.num_envs, cfg.env, num_workers=cfg.num_workers)
    name = f"{algorithm}-seed{seed}"
    writer = SummaryWriter(str(run_dir / "tensorboard" / name))
    config = dataclasses.replace(cfg, learner=dataclasses.replace(cfg.learner, algorithm=algorithm))
    trainer = Trainer(ObsSpec.from_episode(demos[0]), config, demos, seed)
    for tag, value in trainer.warmup_metrics.items():
        writer.add_scalar(tag, value, 0)
    last, best = run_dir / "checkpoints" / name, run_dir / "checkpoints" / f"{name}-best"
    series = run_dir / "checkpoints" / f"{name}{SERIES}"
    validation_seeds = [validation_seed(i) for i in range(cfg.eval_episodes)]
    curve: list[CurvePoint] = []
    stopped = ""

    def validate() -> None:
        runner = PolicyRunner.from_learner(trainer.learner, cfg.task, cfg.eval_sampling)
        point = CurvePoint(
            trainer.updates, trainer.online_steps, evaluate(runner, envs, validation_seeds), cfg.eval_episodes
        )
        writer.add_scalar("eval/success", point.success, trainer.updates)
        metrics = {"validation_success": point.success, "seed": seed}
        trainer.save(last, cfg.task, metrics)
        if cfg.keep_checkpoints:
            trainer.save(series / f"updates-{trainer.updates:07d}", cfg.task, metrics)
        if point.success > max((p.success for p in curve), default=-1.0):
            trainer.save(best, cfg.task, metrics)
        curve.append(point)

    def train(updates: int, bar: tqdm) -> None:
        for metrics in trainer.train(updates):
            bar.update(1)
            if trainer.updates % LOG_EVERY == 0:
                for tag, value in metrics.items():
                    writer.add_scalar(tag, value, trainer.updates)
            if trainer.updates % cfg.eval_every == 0:
                validate()

    budget = (
        cfg.offline_updates
        + cfg.online_rounds * cfg.num_envs * cfg.env.max_episode_steps * cfg.updates_per_step
    )
    if cfg.keep_checkpoints:  # the initial weights: where a curve over training starts
        trainer.save(series / "updates-0000000", cfg.task, {"seed": seed})
    try:
        with tqdm(total=int(budget), desc=name, unit="upd", dynamic_ncols=True, disable=not progress) as bar:
            train(cfg.offline_updates, bar)
            trainer.go_online()
            explore = RolloutPolicy(
                PolicyRunner.from_learner(trainer.learner, cfg.task, cfg.explore_sampling)
            )
            for round_index in range(cfg.online_rounds):
                seeds = [online_seed(seed, round_index * cfg.num_envs + i) for i in range(cfg.num_envs)]
                episodes = rollout(envs, explore, seeds)
                for episode in episodes:
                    trainer.add_episode(episode)
                writer.add_scalar(
                    "charts/online_success", np.mean([e.success for e in episodes]), trainer.online_steps
                )
                train(trainer.owed_updates, bar)
        if not curve or curve[-1].updates != trainer.updates:
            validate()
    except NonFiniteLossError as err:
        # The checkpoints written at the last validation are the last good ones: they are tested.
        stopped = str(err)
        print(f"[{name}] stopped: {err}; the last good checkpoint is kept", file=sys.stderr)
    finally:
        writer.close()
    chosen = best if cfg.final_checkpoint == "best" else last
    if not curve:  # stopped before the first validation: nothing to test
        successes, updates = 0, 0
    else:
        policy = load_policy(chosen, cfg.task, cfg.eval_sampling)
        successes = evaluate(policy, envs, [held_out_seed(i) for i in range(cfg.test_episodes)])
        updates = policy.card.updates
    if own_envs:
        envs.close()
    return RunResult(
        algorithm, seed, successes, cfg.test_episodes, trainer.updates, trainer.online_steps,
        time.perf_counter() - started, curve, str(chosen), updates,
        float(np.mean([d.success for d in demos])), stopped,
    )  # fmt: skip


def checkpoint_series(run_dir: str | Path, name: str) -> list[Path]:
    """The checkpoints kept over training by the run `name` (e.g. "aawr-seed0") of the job in
    `run_dir` (`keep_checkpoints`), in order of updates; empty when it kept none."""
    folder = Path(run_dir) / "checkpoints" / f"{name}{SERIES}"
    return sorted(folder.glob("updates-*")) if folder.is_dir() else []


def run(cfg: PretrainConfig, ray_address: str | None = None) -> tuple[list[RunResult], Path]:
    """Every (seed, algorithm) run, in this process or as Ray tasks (`ray_address`: "local" starts Ray
    on this machine, anything else joins that cluster); then the table, the curves and the JSON."""
    run_dir = Path(cfg.out_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.task}"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    jobs = [(algorithm, seed) for seed in cfg.seeds for algorithm in cfg.algorithms]
    if ray_address is not None:
        from sim.sweep import run_on_ray

        results = run_on_ray(cfg, jobs, run_dir, ray_address)
    else:
        results = []
        with VectorEnv(cfg.task, cfg.num_envs, cfg.env, num_workers=cfg.num_workers) as envs:
            for seed in cfg.seeds:
                print(
                    f"[seed {seed}] collecting {cfg.num_demos} scripted demos of {cfg.task} ...", flush=True
                )
                demos = collect_demos(cfg, seed)
                EpisodeDataset(run_dir / "demos" / f"seed{seed}").extend(demos)
                for algorithm in cfg.algorithms:
                    results.append(run_one(cfg, algorithm, seed, run_dir, demos, envs))
                    print(
                        f"  {algorithm}: test success {results[-1].test_successes}/{cfg.test_episodes}",
                        flush=True,
                    )
    table = results_table(results, cfg)
    (run_dir / "results.md").write_text(table + "\n")
    (run_dir / "results.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    plot_curves(results, run_dir / "curves.png", f"{cfg.task}: validation success while training")
    print(
        f"\n{table}\n\nwritten to {run_dir}: results.md, results.json, curves.png, checkpoints/, tensorboard/"
    )
    return results, run_dir


def results_table(results: list[RunResult], cfg: PretrainConfig) -> str:
    demo_success = float(np.mean([r.demo_success for r in results]))
    lines = [
        f"task {cfg.task}: {cfg.num_demos} scripted demos per seed (demo success {demo_success:.0%}), "
        f"{cfg.offline_updates} offline updates + {cfg.online_rounds} online rounds x {cfg.num_envs} envs; "
        f"the {cfg.final_checkpoint} checkpoint of each run scored on {cfg.test_episodes} held-out episodes",
        "",
        "| algorithm | success per seed (Wilson 95%) | IQM over seeds [95% bootstrap] "
        "| updates | online steps | wall time per run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for algorithm in cfg.algorithms:
        runs = sorted((r for r in results if r.algorithm == algorithm), key=lambda r: r.seed)
        rates = [r.test_success for r in runs]
        if len(runs) >= 2:
            low, high = bootstrap_interval([rates])
            across = f"{iqm(rates):.0%} [{low:.0%}-{high:.0%}]"
        else:
            across = "(one seed)"
        note = " (stopped early)" if any(r.stopped for r in runs) else ""
        updates, steps = int(np.mean([r.updates for r in runs])), int(np.mean([r.online_steps for r in runs]))
        wall = np.mean([r.wall_s for r in runs]) / 60
        per_seed = "; ".join(seed_figure(r) for r in runs)
        lines.append(f"| {algorithm}{note} | {per_seed} | {across} | {updates} | {steps} | {wall:.1f} min |")
    return "\n".join(lines)


def seed_figure(result: RunResult) -> str:
    low, high = wilson_interval(result.test_successes, result.test_episodes)
    return (
        f"{result.seed}: {result.test_success:.0%} ({result.test_successes}/{result.test_episodes}, "
        f"{low:.0%}-{high:.0%})"
    )


def plot_curves(results: list[RunResult], path: Path, title: str) -> None:
    """Validation success against updates: per algorithm the mean over seeds, with a band of the
    Wilson 95% interval of the pooled validation episodes at each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, algorithm in enumerate(dict.fromkeys(r.algorithm for r in results)):
        runs = [r for r in results if r.algorithm == algorithm and r.curve]
        points: dict[int, list[CurvePoint]] = {}
        for run in runs:
            for point in run.curve:
                points.setdefault(point.updates, []).append(point)
        xs = sorted(points)
        successes = [sum(p.successes for p in points[x]) for x in xs]
        trials = [sum(p.trials for p in points[x]) for x in xs]
        bands = np.array([wilson_interval(s, n) for s, n in zip(successes, trials, strict=True)])
        mean = np.array(successes) / np.array(trials)
        label = f"{algorithm} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        ax.plot(xs, mean, marker="o", markersize=3, color=f"C{color}", label=label)
        ax.fill_between(xs, bands[:, 0], bands[:, 1], color=f"C{color}", alpha=0.2)
    ax.set(xlabel="gradient updates", ylabel="validation success", ylim=(-0.02, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="aps-pretrain",
        description=__doc__.split("\n\n")[0],
        epilog=config_help(PretrainConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(p.stem for p in PRESETS.glob("*.yaml")), default="quick")
    parser.add_argument("--config", type=Path, help="a YAML file of PretrainConfig, instead of a preset")
    parser.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="run each (algorithm, seed) as a Ray task: on this machine, or on the cluster at ADDRESS",
    )  # fmt: skip
    parser.add_argument(
        "overrides", nargs="*", help="key=value settings, e.g. task=camouflage-pick seeds=[0,1]"
    )
    args = parser.parse_args(argv)
    relaunch_with_tcmalloc("sim.pretrain", argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        cfg = load_config(PretrainConfig, args.config or PRESETS / f"{args.preset}.yaml", args.overrides)
    except (ConfigError, ValueError) as err:
        print(f"aps-pretrain: {err}", file=sys.stderr)
        return 2
    run(cfg, args.ray)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
