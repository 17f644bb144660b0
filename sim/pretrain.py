"""aps-pretrain: scripted demos in MuJoCo -> offline AAWR (and baselines) -> online in vectorised sims.

For every seed, the same demos and the same budget go to every algorithm; the job writes a results
table, learning curves (PNG + TensorBoard) and one checkpoint per algorithm and seed, which the
policy node loads (`policies.checkpoint.load_policy`).

    aps-pretrain --preset quick                      # the README's main job
    aps-pretrain --preset full task=camouflage-pick seeds=[0,1,2]
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

import numpy as np
from tqdm import tqdm

import sim
from apsconfig import ConfigError, config_help, load_config, save_config
from policies.checkpoint import PolicyRunner, save_checkpoint
from policies.config import ActionSampling, Algorithm, LearnerConfig
from policies.episodes import Episode, EpisodeDataset
from policies.learner import Learner, NonFiniteLossError
from policies.metrics import wilson_interval
from policies.networks import ObsSpec
from policies.replay import SequenceBatch, SequenceReplay, sample_mixed
from policies.runtime import relaunch_with_tcmalloc, set_torch_threads
from sim.config import DemoConfig, TaskConfig
from sim.seeds import online_seed, validation_seed
from sim.vector import VectorEnv, rollout

PRESETS = Path(__file__).parent / "presets"


@dataclass
class PretrainConfig:
    task: str = "search-pick"  # one of sim.TASK_NAMES
    # trained on the same demos and budget
    algorithms: list[Algorithm] = field(default_factory=lambda: ["aawr", "awr", "bc"])
    # one run per seed and algorithm: its own demos and initialisation
    seeds: list[int] = field(default_factory=lambda: [0])
    env: TaskConfig = field(default_factory=TaskConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    num_demos: int = 100  # scripted demonstrations per seed, successful or not
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    offline_updates: int = 2000  # gradient updates on the demos before any online round
    online_rounds: int = 0  # each round: one batch of episodes in the vectorised sims, then updates
    updates_per_step: float = 0.25  # online gradient updates per environment step collected
    num_envs: int = 8  # sims stepped together by one batched policy
    num_workers: int = 2  # processes that hold the sims (0: all in this process)
    eval_episodes: int = 32  # held-out episodes per evaluation
    eval_every: int = 500  # updates between evaluations (the learning curve)
    eval_sampling: ActionSampling = "component"  # how the evaluated policy picks actions (ActionMixture.act)
    explore_sampling: ActionSampling = "full"  # how the online rollouts pick actions
    out_dir: str = "runs"  # each run writes a time-stamped folder here

    def __post_init__(self) -> None:
        if self.task not in sim.TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(sim.TASK_NAMES)}")
        if not self.algorithms or not self.seeds:
            raise ValueError("need at least one algorithm and one seed")
        if min(self.num_demos, self.eval_episodes, self.num_envs, self.eval_every) < 1:
            raise ValueError("num_demos, eval_episodes, num_envs and eval_every must be >= 1")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if len(set(self.algorithms)) < len(self.algorithms) or len(set(self.seeds)) < len(self.seeds):
            raise ValueError("algorithms and seeds must not repeat (runs would share checkpoint folders)")
        if self.offline_updates < 0 or self.online_rounds < 0 or self.updates_per_step < 0:
            raise ValueError("offline_updates, online_rounds and updates_per_step must be >= 0")


@dataclass
class RunResult:
    algorithm: str
    seed: int
    successes: int
    trials: int
    updates: int
    online_steps: int
    wall_s: float
    curve: list[tuple[int, float]]  # (gradient updates, success rate)
    checkpoint: str
    demo_success: float  # success rate of the demos it learned from
    stopped: str = ""  # why training stopped early, if it did


class RolloutPolicy:
    """Adapts the step runner to `sim.vector.rollout`: it reads only the onboard part."""

    def __init__(self, runner: PolicyRunner) -> None:
        self.runner = runner

    def reset(self, num_envs: int) -> None:
        self.runner.reset(num_envs)

    def act(self, obs: dict) -> np.ndarray:
        return self.runner.act(obs["onboard"])


def evaluate(
    learner: Learner, envs: VectorEnv, task: str, episodes: int, sampling: ActionSampling
) -> tuple[int, int]:
    """The policy on fixed evaluation seeds, with fixed action draws: (successes, trials)."""
    policy = RolloutPolicy(PolicyRunner.from_learner(learner, task, sampling, seed=validation_seed(0)))
    successes = 0
    for start in range(0, episodes, envs.num_envs):
        seeds = [validation_seed(s) for s in range(start, min(start + envs.num_envs, episodes))]
        successes += sum(e.success for e in rollout(envs, policy, seeds))
    return successes, episodes


def train_one(
    cfg: PretrainConfig,
    algorithm: Algorithm,
    seed: int,
    demos: list[Episode],
    envs: VectorEnv,
    run_dir: Path,
    writer: object,
    progress: tqdm,
) -> RunResult:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    learner = Learner(
        ObsSpec.from_episode(demos[0]), dataclasses.replace(cfg.learner, algorithm=algorithm), seed
    )
    lc = learner.config
    demo_replay = SequenceReplay(lc.seq_len, lc.burn_in)
    demo_replay.extend(demos)
    online_replay = SequenceReplay(lc.seq_len, lc.burn_in, capacity_episodes=2000)
    checkpoint = run_dir / "checkpoints" / f"{algorithm}-seed{seed}"
    tag = f"{algorithm}/seed{seed}"
    curve: list[tuple[int, float]] = []
    online_steps, version, stopped = 0, 0, ""

    def checkpoint_and_evaluate() -> tuple[int, int]:
        nonlocal version
        successes, trials = evaluate(learner, envs, cfg.task, cfg.eval_episodes, cfg.eval_sampling)
        curve.append((learner.updates, successes / trials))
        writer.add_scalar(f"{tag}/success", successes / trials, learner.updates)
        version += 1
        save_checkpoint(learner, checkpoint, cfg.task, version, {"success": successes / trials, "seed": seed})
        return successes, trials

    def train(updates: int, batch_source) -> None:
        for _ in range(updates):
            metrics = learner.update(batch_source())
            progress.update(1)
            if learner.updates % 50 == 0:
                for name, value in metrics.items():
                    writer.add_scalar(f"{tag}/{name}", value, learner.updates)
            if learner.updates % cfg.eval_every == 0:
                checkpoint_and_evaluate()

    try:
        train(cfg.offline_updates, lambda: demo_replay.sample(lc.batch_size, rng))
        learner.go_online()

        def online_batches() -> SequenceBatch:
            # BC imitates; its own rollouts are no demonstrations, so it keeps to the demos.
            if algorithm == "bc":
                return demo_replay.sample(lc.batch_size, rng)
            return sample_mixed(demo_replay, online_replay, lc.batch_size, lc.demo_fraction, rng)

        explore = RolloutPolicy(PolicyRunner.from_learner(learner, cfg.task, cfg.explore_sampling, seed=seed))
        for round_index in range(cfg.online_rounds):
            seeds = [online_seed(seed, round_index * cfg.num_envs + i) for i in range(cfg.num_envs)]
            episodes = rollout(envs, explore, seeds)
            online_replay.extend(episodes)
            steps = sum(len(e) for e in episodes)
            online_steps += steps
            writer.add_scalar(f"{tag}/online_success", np.mean([e.success for e in episodes]), online_steps)
            train(round(steps * cfg.updates_per_step), online_batches)
    except NonFiniteLossError as err:
        # Keep the last good checkpoint (written at the last evaluation) and report why we stopped.
        stopped = str(err)
        progress.write(f"[{tag}] stopped: {err}; the last good checkpoint is kept")
    # The last evaluation stands when training stopped early (its checkpoint is the last good one)
    # or when nothing has changed since it.
    if curve and (stopped or curve[-1][0] == learner.updates):
        successes, trials = round(curve[-1][1] * cfg.eval_episodes), cfg.eval_episodes
    else:
        successes, trials = checkpoint_and_evaluate()
    return RunResult(
        algorithm, seed, successes, trials, learner.updates, online_steps, time.perf_counter() - started,
        curve, str(checkpoint), float(np.mean([d.success for d in demos])), stopped,
    )  # fmt: skip


def results_table(results: list[RunResult], cfg: PretrainConfig, demo_success: float) -> str:
    lines = [
        f"task {cfg.task}: {cfg.num_demos} scripted demos per seed (demo success {demo_success:.0%}), "
        f"{cfg.offline_updates} offline updates + {cfg.online_rounds} online rounds x {cfg.num_envs} envs, "
        f"evaluation on {cfg.eval_episodes} held-out seeds x {len(cfg.seeds)} seed(s)",
        "",
        "| algorithm | success | 95% CI (Wilson) | updates | online steps | wall time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for algorithm in cfg.algorithms:
        runs = [r for r in results if r.algorithm == algorithm]
        successes, trials = sum(r.successes for r in runs), sum(r.trials for r in runs)
        low, high = wilson_interval(successes, trials)
        note = " (stopped early)" if any(r.stopped for r in runs) else ""
        lines.append(
            f"| {algorithm}{note} | {successes / trials:.0%} ({successes}/{trials}) | {low:.0%}-{high:.0%} | "
            f"{int(np.mean([r.updates for r in runs]))} | {int(np.mean([r.online_steps for r in runs]))} | "
            f"{sum(r.wall_s for r in runs) / 60:.1f} min |"
        )
    return "\n".join(lines)


def plot_curves(results: list[RunResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    algorithms = list(dict.fromkeys(r.algorithm for r in results))
    for color, algorithm in enumerate(algorithms):
        runs = [r for r in results if r.algorithm == algorithm and r.curve]
        for i, run in enumerate(runs):
            xs, ys = zip(*run.curve, strict=True)
            ax.plot(xs, ys, marker="o", color=f"C{color}", alpha=0.8, label=algorithm if i == 0 else None)
    ax.set(xlabel="gradient updates", ylabel="success rate", ylim=(-0.02, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: PretrainConfig) -> tuple[list[RunResult], Path]:
    from torch.utils.tensorboard import SummaryWriter

    run_dir = Path(cfg.out_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.task}"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    results: list[RunResult] = []
    per_run = (
        cfg.offline_updates
        + cfg.online_rounds * cfg.num_envs * cfg.env.max_episode_steps * cfg.updates_per_step
    )
    with VectorEnv(cfg.task, cfg.num_envs, cfg.env, num_workers=cfg.num_workers) as envs:
        for seed in cfg.seeds:
            print(f"[seed {seed}] collecting {cfg.num_demos} scripted demos of {cfg.task} ...", flush=True)
            demos = sim.collect_demos(cfg.task, cfg.num_demos, seed, cfg.env, cfg.demo, cfg.num_workers)
            EpisodeDataset(run_dir / "demos" / f"seed{seed}").extend(demos)
            for algorithm in cfg.algorithms:
                with tqdm(
                    total=int(per_run), desc=f"{algorithm} seed {seed}", unit="upd", dynamic_ncols=True
                ) as bar:
                    results.append(train_one(cfg, algorithm, seed, demos, envs, run_dir, writer, bar))
                print(f"  {algorithm}: success {results[-1].successes}/{results[-1].trials}", flush=True)
    writer.close()
    table = results_table(results, cfg, float(np.mean([r.demo_success for r in results])))
    (run_dir / "results.md").write_text(table + "\n")
    (run_dir / "results.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    plot_curves(results, run_dir / "curves.png", f"{cfg.task}: success vs updates")
    print(
        "\n"
        + table
        + f"\n\nwritten to {run_dir} (results.md, results.json, curves.png, checkpoints/, tensorboard/)"
    )
    return results, run_dir


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
    set_torch_threads("train")
    run(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
