"""aps-diagnose probe: does the policy's memory hold what the task needs, and when did it learn to?

    aps-pretrain --preset tmaze keep_checkpoints=true                  # a run that keeps its checkpoints
    aps-diagnose probe run=runs/<time>-tmaze targets=[belief]
    aps-diagnose probe run=runs/<time>-search-pick 'targets=["object_pos[1]"]' network=critic

For every checkpoint of each run (aps-pretrain's `keep_checkpoints` series, else its last checkpoint),
the probe estimates the mutual information I(h_t; y_t) between the agent state h_t (the output of
the policy's, or the critic's, recurrent core after observation t) and a target y_t, as Lambrechts,
Bolland and Ernst (2022) do: with MINE (diagnostics.mine), trained on the steps of some episodes and
reported on the steps of others (split by episode), beside the permutation baseline. The target is
a privileged key, or one component of it ("object_pos[1]": search-pick's side): on the T-maze,
`belief` is the exact Bayes belief P(goal = up | readings), the quantity a memory that solves the
task must hold.

The episodes come from each checkpoint's own rollouts in sim, on the job's validation seeds (or
held-out ones, never training ones), with the run's task settings and evaluation sampling: the
distribution the policy meets. Or, with `data=<episode folder>`, the same recorded episodes are
replayed through every checkpoint's history encoder. Writes probe.md, probe.png and probe.json
into `<run>/diagnostics/` (or `out`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import sim
from apsconfig import load_config
from diagnostics.cli import run_command
from diagnostics.mine import MineConfig, MineEstimate, mutual_information
from policies.checkpoint import CheckpointCard, CheckpointError, PolicyRunner, load_learner
from policies.config import ActionSampling
from policies.episodes import Episode, EpisodeDataset
from policies.learner import Learner
from policies.networks import HistoryEncoder
from sim.demos import run_episode
from sim.pretrain import SERIES, PretrainConfig, RolloutPolicy, checkpoint_series
from sim.seeds import held_out_seed, validation_seed
from sim.vector import VectorEnv, rollout

TARGET = re.compile(r"^(?P<key>[A-Za-z0-9_]+)(?:\[(?P<index>\d+)\])?$")


@dataclass
class ProbeConfig:
    """What to probe, with which episodes, and the estimator's settings."""

    run: str = ""  # an aps-pretrain run folder (runs/<time>-<task>): its config.yaml and checkpoints/
    runs: list[str] | None = None  # its runs to probe, e.g. [aawr-seed0, awr-seed0] (None: every one)
    # privileged keys whose mutual information with the hidden state is estimated, each whole or one
    # component of it: belief (T-maze), object_pos[1] (search-pick's side)
    targets: list[str] = field(default_factory=lambda: ["belief"])
    network: Literal["policy", "critic"] = "policy"  # whose recurrent core's output is the hidden state
    # the episodes: each checkpoint's own rollouts ("policy"); the task's scripted demonstrator with
    # the run's demo settings, the same episodes for every checkpoint ("scripted"); or the recorded
    # episodes of `data`, replayed through every checkpoint ("data")
    source: Literal["policy", "scripted", "data"] = "policy"
    sampling: ActionSampling | None = None  # how policy rollouts act (None: the run's eval_sampling)
    episodes: int = 100  # sim episodes per checkpoint (policy) or in all (scripted)
    seeds: Literal["validation", "held-out"] = "validation"  # the job's env seeds the sim episodes use
    data: str = ""  # the episode folder that source=data replays
    validation_fraction: float = 0.3  # share of the episodes whose steps give the reported estimate
    seed: int = 0  # the episode split, MINE's initial weights and batches
    mine: MineConfig = field(default_factory=MineConfig)
    out: str = ""  # where the report goes (default: <run>/diagnostics)

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run= is required: an aps-pretrain run folder")
        if not self.targets:
            raise ValueError("targets must name at least one privileged key")
        bad = [t for t in self.targets if not TARGET.match(t)]
        if bad:
            raise ValueError(f"targets {bad} must look like key or key[index]")
        if self.episodes < 4:
            raise ValueError(
                f"episodes must be >= 4 (some to train MINE on, some to validate), got {self.episodes}"
            )
        if (self.source == "data") != bool(self.data):
            raise ValueError("data= names the episode folder that source=data replays (and only then)")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")


@dataclass(frozen=True)
class ProbePoint:
    run: str  # e.g. aawr-seed0
    updates: int  # of the checkpoint
    target: str
    estimate: MineEstimate
    validation_success: float | None  # the job's validation success at this checkpoint, if it saved one
    samples: int  # steps (hidden states) in both splits
    # plug-in entropy of the target on the validation steps when it takes few values (the T-maze's
    # belief: 1/2 before a reading, then 0 or 1): the ceiling of the MI; None for a continuous target
    target_entropy: float | None


def target_values(episode: Episode, target: str) -> np.ndarray:
    """[T+1, D] values of a target ("key" or "key[index]") at every observation of the episode."""
    match = TARGET.match(target)
    if match is None or match["key"] not in episode.privileged:
        raise ValueError(f"target {target!r}: the episodes' privileged keys are {sorted(episode.privileged)}")
    values = episode.privileged[match["key"]].reshape(len(episode) + 1, -1).astype(np.float64)
    if match["index"] is None:
        return values
    index = int(match["index"])
    if index >= values.shape[1]:
        raise ValueError(f"target {target!r}: {match['key']} has {values.shape[1]} components")
    return values[:, index : index + 1]


@torch.no_grad()
def hidden_states(encoder: HistoryEncoder, episode: Episode) -> np.ndarray:
    """[T+1, H]: the core's output h_t after each observation, from the zero state (as in a rollout)."""
    onboard = {
        k: torch.from_numpy(np.ascontiguousarray(v))[None] if v.dtype == np.uint8
        else torch.as_tensor(v, dtype=torch.float32)[None]
        for k, v in episode.onboard.items()
    }  # fmt: skip
    h, _ = encoder(onboard, encoder.core.initial_state(1))
    return h[0].numpy().astype(np.float64)


def history_encoder(learner: Learner, network: str) -> HistoryEncoder | None:
    """The policy's history encoder, or the critic's (None: this learner's critic has no history)."""
    if network == "policy":
        return learner.policy.history
    return learner.critic.history if learner.critic is not None else None


def probe_runs(cfg: ProbeConfig) -> dict[str, list[Path]]:
    """Run name -> its checkpoints in order of updates: the kept series, else the last checkpoint."""
    folder = Path(cfg.run) / "checkpoints"
    if not folder.is_dir():
        raise ValueError(f"{cfg.run}: no checkpoints/ folder; is it an aps-pretrain run folder?")
    names = sorted(
        {p.name.removesuffix(SERIES) for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
        - {p.name for p in folder.glob("*-best")}
    )
    if cfg.runs is not None:
        missing = sorted(set(cfg.runs) - set(names))
        if missing:
            raise ValueError(f"{cfg.run} has no runs {missing}; it has {names}")
        names = list(cfg.runs)
    return {name: checkpoint_series(cfg.run, name) or [folder / name] for name in names}


def env_seeds(cfg: ProbeConfig) -> list[int]:
    seed_of = validation_seed if cfg.seeds == "validation" else held_out_seed
    return [seed_of(i) for i in range(cfg.episodes)]


def scripted_episodes(job: PretrainConfig, seeds: list[int]) -> list[Episode]:
    """The task's scripted demonstrator, with the run's demo and task settings, on these seeds."""
    env = sim.make(job.task, job.env)
    try:
        attrs = {"source": "scripted"}
        return [run_episode(env, sim.make_demonstrator(env, job.demo, s), s, attrs) for s in seeds]
    finally:
        env.close()


def rollout_episodes(runner: PolicyRunner, envs: VectorEnv, seeds: list[int]) -> list[Episode]:
    """One episode of the checkpoint's policy per seed, in batches of the vectorised sims."""
    policy = RolloutPolicy(runner)
    return [
        e
        for i in range(0, len(seeds), envs.num_envs)
        for e in rollout(envs, policy, seeds[i : i + envs.num_envs])
    ]


def discrete_entropy(values: np.ndarray, most: int = 32) -> float | None:
    """H in nats of the rows of `values` as a discrete variable; None when more than `most` distinct."""
    _, counts = np.unique(values, axis=0, return_counts=True)
    if len(counts) > most:
        return None
    p = counts / counts.sum()
    return float(max(0.0, -(p * np.log(p)).sum()))  # a constant target: 0, not -0


def _rows(indices: np.ndarray, arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([arrays[i] for i in indices])


def probe_checkpoint(
    encoder: HistoryEncoder, card: CheckpointCard, name: str, episodes: list[Episode], cfg: ProbeConfig
) -> list[ProbePoint]:
    """MINE estimates of I(h_t; target_t) over these episodes' steps, one per target."""
    states = [hidden_states(encoder, e) for e in episodes]
    order = np.random.default_rng(cfg.seed).permutation(len(episodes))
    validation = order[: max(1, round(cfg.validation_fraction * len(episodes)))]
    train = order[len(validation) :]
    points = []
    for target in cfg.targets:
        values = [target_values(e, target) for e in episodes]
        estimate = mutual_information(
            _rows(train, states), _rows(train, values), _rows(validation, states), _rows(validation, values),
            cfg.mine, cfg.seed,
        )  # fmt: skip
        success = card.metrics.get("validation_success")
        samples = sum(len(s) for s in states)
        entropy = discrete_entropy(_rows(validation, values))
        points.append(ProbePoint(name, card.updates, target, estimate, success, samples, entropy))
    return points


def run(cfg: ProbeConfig) -> tuple[list[ProbePoint], Path]:
    run_dir = Path(cfg.run)
    job = load_config(PretrainConfig, run_dir / "config.yaml")
    fixed = None  # the episodes every checkpoint sees, unless each rolls out its own
    if cfg.source == "data":
        fixed = EpisodeDataset(cfg.data).load_all()
        if not fixed:
            raise ValueError(f"{cfg.data}: no episodes to replay")
    elif cfg.source == "scripted":
        fixed = scripted_episodes(job, env_seeds(cfg))
    points: list[ProbePoint] = []
    skipped: list[str] = []
    with VectorEnv(job.task, job.num_envs, job.env, num_workers=0) as envs:
        for name, checkpoints in probe_runs(cfg).items():
            for checkpoint in checkpoints:
                learner, card = load_learner(checkpoint, job.task, fresh_optimizer=True)
                encoder = history_encoder(learner, cfg.network)
                if encoder is None:
                    skipped.append(f"{name} ({card.config.algorithm}: its critic has no history)")
                    break
                runner = PolicyRunner(learner.policy, card, cfg.sampling or job.eval_sampling, cfg.seed)
                episodes = fixed if fixed is not None else rollout_episodes(runner, envs, env_seeds(cfg))
                points += probe_checkpoint(encoder, card, name, episodes, cfg)
                print(f"  {name} @ {card.updates} updates: " + ", ".join(
                    f"{p.target} {p.estimate.validation:.3f} nats (shuffled {p.estimate.baseline:.3f})"
                    for p in points[-len(cfg.targets):]
                ), flush=True)  # fmt: skip
    out = Path(cfg.out) if cfg.out else run_dir / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps([dataclasses.asdict(p) for p in points], indent=2))
    (out / "probe.md").write_text(report(points, cfg, job, skipped))
    plot(points, out / "probe.png", f"{job.task}: I(hidden state of the {cfg.network}; target) over training")
    return points, out


def report(points: list[ProbePoint], cfg: ProbeConfig, job: PretrainConfig, skipped: list[str]) -> str:
    source = {
        "data": f"the recorded episodes of {cfg.data}",
        "scripted": f"{cfg.episodes} episodes of the scripted demonstrator on {cfg.seeds} seeds",
        "policy": f"{cfg.episodes} rollouts of the checkpoint ({cfg.sampling or job.eval_sampling} sampling) "
        f"on {cfg.seeds} seeds",
    }[cfg.source]
    lines = [
        f"# Belief probe: {job.task}, the {cfg.network}'s hidden state",
        "",
        f"MINE (Donsker-Varadhan bound, {cfg.mine.steps} steps) trained on the steps of "
        f"{1 - cfg.validation_fraction:.0%} of the episodes, reported on the other "
        f"{cfg.validation_fraction:.0%} "
        f"(split by episode, seed {cfg.seed}); each checkpoint's episodes: {source}. Shuffled: the same "
        "estimator with the targets shuffled across samples (its bias and noise). H(target): the "
        "target's entropy on the validation steps where it takes few values, the ceiling of the MI. Nats.",
        "",
        "| run | updates | target | MI (validation) | MI (train) | shuffled | H(target) | validation success "
        "| steps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in points:
        success = "" if p.validation_success is None else f"{p.validation_success:.0%}"
        entropy = "" if p.target_entropy is None else f"{p.target_entropy:.3f}"
        lines.append(
            f"| {p.run} | {p.updates} | {p.target} | {p.estimate.validation:.3f} | {p.estimate.train:.3f} "
            f"| {p.estimate.baseline:.3f} | {entropy} | {success} | {p.samples} |"
        )
    if skipped:
        lines += ["", "Not probed: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def plot(points: list[ProbePoint], path: Path, title: str) -> None:
    """MI against updates, one panel per target: a line per run, its shuffled baseline dashed, its
    validation success dotted (right axis), and the target's entropy (the MI's ceiling) where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(p.target for p in points))
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4.2), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        success_axis = ax.twinx()
        success_axis.set(ylabel="validation success (dotted)", ylim=(-0.02, 1.02))
        for color, name in enumerate(dict.fromkeys(p.run for p in points)):
            mine = sorted(
                (p for p in points if p.run == name and p.target == target), key=lambda p: p.updates
            )
            xs = [p.updates for p in mine]
            ax.plot(xs, [p.estimate.validation for p in mine], "o-", color=f"C{color}", label=name)
            ax.plot(xs, [p.estimate.baseline for p in mine], "--", color=f"C{color}", alpha=0.6,
                    label=f"{name}, shuffled")  # fmt: skip
            rated = [p for p in mine if p.validation_success is not None]
            success_axis.plot([p.updates for p in rated], [p.validation_success for p in rated], ":",
                              color=f"C{color}", alpha=0.7)  # fmt: skip
        entropies = [p.target_entropy for p in points if p.target == target and p.target_entropy is not None]
        if entropies:
            ax.axhline(float(np.mean(entropies)), color="black", linestyle="-.", linewidth=0.8,
                       label="H(target), the ceiling")  # fmt: skip
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set(xlabel="gradient updates", ylabel="MI on validation episodes (nats)", title=target)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    def report(cfg: ProbeConfig) -> str:
        points, out = run(cfg)
        return f"written to {out}: probe.md, probe.png, probe.json ({len(points)} estimates)"

    # KeyError: a replayed dataset without the target's key
    return run_command("probe", __doc__, ProbeConfig, "run=runs/x targets=[belief]", argv, report,
                       (CheckpointError, KeyError))  # fmt: skip
