"""aps-diagnose warmup: will a recurrent core keep information long enough?

    aps-diagnose warmup preset=tmaze cores=[gru,lstm,brc,bmru]     # fresh cores of a preset's networks
    aps-diagnose warmup run=runs/<time>-tmaze                       # every checkpoint of a run
    aps-diagnose warmup checkpoint=runs/<time>-tmaze/checkpoints/aawr-seed0 steps=100

Measures the reachable multistability of the policy's recurrent core (and the critic's history core,
where there is one) as the variability amongst attractors (VAA) of Lambrechts et al. (2023)
(policies.warmup): from the states the core reaches on windows of the task's scripted demos, one
constant random input is held for `settle` steps, and the VAA is the number of distinct states it ends
in over the number of windows (1/n: a single attractor, everything seen is forgotten; 1: every
start state persists). Then `steps` warmup steps are taken on the core, as the learner's
`warmup_steps` option would take them, and the VAA is measured again. Writes warmup.md, warmup.png
and warmup.json into `<run>/diagnostics/` (a checkpoint's run, or `out`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import sim
from apsconfig import ConfigError, load_config
from diagnostics.cli import run_command
from policies.checkpoint import CheckpointError, load_learner
from policies.config import CoreType
from policies.learner import Learner, batch_to_torch
from policies.networks import ObsSpec
from policies.replay import SequenceReplay
from policies.warmup import WarmupResult, warm_up_history
from sim.pretrain import PRESETS, PretrainConfig


@dataclass
class WarmupDiagnosisConfig:
    """Which cores to measure, on which inputs, and the warmup applied to them."""

    run: str = ""  # an aps-pretrain run folder: every checkpoint in its checkpoints/
    checkpoint: str = ""  # or one checkpoint folder
    # without run or checkpoint: fresh cores of this aps-pretrain preset's task and networks
    preset: str = "tmaze"
    cores: list[CoreType] | None = None  # fresh cores to compare (None: the preset's core)
    demos: int = 16  # scripted demos of the task, whose windows feed the cores
    windows: int = 32  # windows drawn from the demos: the n of the VAA, whose floor is 1/n
    steps: int = 100  # warmup steps taken on each core after the first measure
    lr: float = 3e-2  # Adam step size of the warmup (the learner's default warmup_lr)
    settle: int = 10_000  # steps the constant input is held before the final states are compared
    seed: int = 0  # demos, windows, initial weights and the constant inputs
    out: str = ""  # where the report goes (default: <run>/diagnostics, or diagnostics/ for fresh cores)

    def __post_init__(self) -> None:
        if self.run and self.checkpoint:
            raise ValueError("give run= or checkpoint=, not both")
        if (self.run or self.checkpoint) and self.cores:
            raise ValueError("cores= picks fresh cores; a run's or a checkpoint's cores are its own")
        if min(self.demos, self.windows) < 2 or self.steps < 0 or self.settle < 1 or not self.lr > 0:
            raise ValueError("demos and windows must be >= 2, steps >= 0, settle >= 1 and lr > 0")


@dataclass
class Row:
    source: str  # a checkpoint's name, or "fresh <core>"
    network: str  # actor or critic
    core: str
    result: WarmupResult


def learners(cfg: WarmupDiagnosisConfig, spec: ObsSpec, job: PretrainConfig) -> list[tuple[str, Learner]]:
    """The learners whose cores are measured, by name."""
    if cfg.checkpoint or cfg.run:
        folders = [Path(cfg.checkpoint)] if cfg.checkpoint else checkpoints(Path(cfg.run))
        return [(folder.name, load_learner(folder, job.task, fresh_optimizer=True)[0]) for folder in folders]
    found = []
    for core in cfg.cores or [job.learner.network.core]:
        torch.manual_seed(cfg.seed)
        network = dataclasses.replace(job.learner.network, core=core)
        found.append((f"fresh {core}", Learner(spec, dataclasses.replace(job.learner, network=network))))
    return found


def checkpoints(run: Path) -> list[Path]:
    folders = sorted(p for p in (run / "checkpoints").glob("*") if (p / "checkpoint.json").is_file())
    if not folders:
        raise CheckpointError(f"{run}: no checkpoints/ with a checkpoint in it; is it an aps-pretrain run?")
    return folders


def job_config(cfg: WarmupDiagnosisConfig) -> tuple[PretrainConfig, Path | None]:
    """The pretraining job that sets the task and its demos, and its run folder when there is one."""
    if cfg.run or cfg.checkpoint:
        run = Path(cfg.run) if cfg.run else Path(cfg.checkpoint).resolve().parent.parent
        if not (run / "config.yaml").is_file():
            raise ConfigError(
                f"{run}: no config.yaml, so its task settings are unknown (an aps-pretrain run?)"
            )
        return load_config(PretrainConfig, run / "config.yaml"), run
    preset = PRESETS / f"{cfg.preset}.yaml"
    if not preset.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ConfigError(f"unknown preset {cfg.preset!r}; known: {known}")
    return load_config(PretrainConfig, preset), None


def diagnose(cfg: WarmupDiagnosisConfig) -> tuple[list[Row], Path]:
    job, run = job_config(cfg)
    demos = sim.collect_demos(job.task, cfg.demos, cfg.seed, job.env, job.demo, num_workers=0)
    spec = ObsSpec.from_episode(demos[0])
    rows = []
    for name, learner in learners(cfg, spec, job):
        replay = SequenceReplay(learner.config.seq_len, learner.config.burn_in)
        replay.extend(demos)
        onboard = batch_to_torch(replay.sample(cfg.windows, np.random.default_rng(cfg.seed)))["onboard"]
        histories = {"actor": learner.actor.history}
        if learner.critic is not None and learner.critic.history is not None:
            histories["critic"] = learner.critic.history
        for network, history in histories.items():
            result = warm_up_history(history, onboard, cfg.steps, cfg.lr, cfg.seed, cfg.settle)
            rows.append(Row(name, network, learner.config.network.core, result))
    out = Path(cfg.out) if cfg.out else (run / "diagnostics" if run else Path("diagnostics"))
    out.mkdir(parents=True, exist_ok=True)
    write_report(rows, cfg, job, out)
    return rows, out


def write_report(rows: list[Row], cfg: WarmupDiagnosisConfig, job: PretrainConfig, out: Path) -> None:
    lines = [
        f"# Reachable multistability (VAA) on {job.task}",
        "",
        f"VAA of each recurrent core, from {cfg.windows} windows of {cfg.demos} scripted demos "
        f"(1/{cfg.windows} = {1 / cfg.windows:.3f}: one attractor; 1: every reached state persists), "
        f"before and after {cfg.steps} warmup steps (Adam, lr {cfg.lr}), seed {cfg.seed}.",
        "",
        "| source | network | core | VAA | VAA after warmup | VAA* first -> last step |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        r = row.result
        trace = f"{r.vaa_star[0]:.3f} -> {r.vaa_star[-1]:.3f}" if r.vaa_star else "-"
        cells = [row.source, row.network, row.core, f"{r.vaa_before:.3f}", f"{r.vaa_after:.3f}", trace]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "warmup.md").write_text("\n".join(lines) + "\n")
    (out / "warmup.json").write_text(
        json.dumps([{**dataclasses.asdict(row), "result": dataclasses.asdict(row.result)} for row in rows])
    )
    plot(rows, out / "warmup.png", f"{job.task}: reachable multistability before and after warmup")


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row.source}\n{row.network}" for row in rows]
    x = np.arange(len(rows))
    fig, (bars, traces) = plt.subplots(1, 2, figsize=(11, 4))
    bars.bar(x - 0.2, [row.result.vaa_before for row in rows], 0.4, label="before")
    bars.bar(x + 0.2, [row.result.vaa_after for row in rows], 0.4, label="after warmup")
    bars.set_xticks(x, labels, fontsize=7)
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("VAA")
    bars.legend()
    for label, row in zip(labels, rows, strict=True):
        traces.plot(row.result.vaa_star, label=label.replace("\n", " "))
    traces.set_xlabel("warmup step")
    traces.set_ylabel("VAA* (differentiable)")
    traces.set_ylim(0, 1.05)
    traces.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    def report(cfg: WarmupDiagnosisConfig) -> str:
        rows, out = diagnose(cfg)
        return f"written to {out}: warmup.md, warmup.png, warmup.json ({len(rows)} cores)"

    return run_command("warmup", __doc__, WarmupDiagnosisConfig, "preset=tmaze cores=[gru,bmru]", argv,
                       report, (CheckpointError,))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
