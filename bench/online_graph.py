"""Learning through the graph: online AAWR on search-pick run by the train_online graph (sim robot in
lockstep, policy, robot interface, recorder, learner, each its own process over DDS) against the sim
job's online phase in-process, both from the same offline checkpoint, with the same demos, online
seeds, updates per step and batch mix, both evaluated on the same validation seeds.

    python -m bench.online_graph               # runs the offline part first (aps-pretrain quick, AAWR)
    python -m bench.online_graph --offline runs/<run> --episodes 64 --every 16

CPU heavy (minutes to an hour on 2 cores). JSON on stdout and in <out>/online_graph.json, the two
curves side by side in <out>/online_graph.png. The two arms differ in one way the graph cannot
avoid: the sim job collects a round of episodes, then trains what they earned, then collects the
next with the new weights; in the graph the robot does not wait for the learner, so an episode is
acted by the newest weights that had arrived when it started.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from apsconfig import load_config
from policies.checkpoint import PolicyRunner, load_learner, load_policy
from policies.episodes import EpisodeDataset
from policies.trainer import Trainer
from sim.pretrain import PRESETS, PretrainConfig, RolloutPolicy, evaluate
from sim.pretrain import run as pretrain
from sim.seeds import online_seed, validation_seed
from sim.vector import VectorEnv, rollout

TASK = "search-pick"


def offline_run(out: Path, settings: list[str]) -> Path:
    cfg = load_config(PretrainConfig, PRESETS / "quick.yaml", [
        f"task={TASK}", "algorithms=[aawr]", "online_rounds=0", "test_episodes=32", f"out_dir={out}",
        *settings,
    ])  # fmt: skip
    _, run_dir = pretrain(cfg)
    return run_dir


def curve_point(checkpoint: Path, envs: VectorEnv, cfg: PretrainConfig, seeds: list[int]) -> dict:
    card = json.loads((checkpoint / "checkpoint.json").read_text())
    policy = load_policy(checkpoint, TASK, cfg.eval_sampling)
    return {
        "online_episodes": int(card["metrics"].get("online_episodes", 0)),
        "online_steps": int(card["metrics"].get("online_steps", 0)),
        "updates": int(card["updates"]),
        "successes": int(evaluate(policy, envs, seeds)),
        "trials": len(seeds),
    }


def sim_job_arm(
    cfg: PretrainConfig, checkpoint: Path, demos: list, episodes: int, every: int, out: Path
) -> list[Path]:
    """The sim job's online phase (as sim.pretrain.run_one runs it) from the offline checkpoint: rounds
    of num_envs episodes with exploring actions, then the updates they earned; a checkpoint kept
    every `every` episodes."""
    torch.manual_seed(0)
    learner, card = load_learner(checkpoint, TASK)
    trainer = Trainer(learner.spec, cfg, demos, seed=0, learner=learner, version=card.version)
    trainer.go_online()
    explore = RolloutPolicy(PolicyRunner.from_learner(trainer.learner, TASK, cfg.explore_sampling))
    kept = []
    with VectorEnv(TASK, cfg.num_envs, cfg.env, num_workers=cfg.num_workers) as envs:
        while trainer.online_episodes < episodes:
            first = trainer.online_episodes
            for episode in rollout(envs, explore, [online_seed(0, first + i) for i in range(cfg.num_envs)]):
                trainer.add_episode(episode)
            for _ in trainer.train(trainer.owed_updates):
                pass
            if trainer.online_episodes % every == 0:
                metrics = {"online_episodes": trainer.online_episodes, "online_steps": trainer.online_steps}
                folder = out / "sim_job" / f"episodes-{trainer.online_episodes:06d}"
                kept.append(trainer.save(folder, TASK, metrics))
    return kept


def graph_arm(
    cfg: PretrainConfig, checkpoint: Path, demos: Path, episodes: int, every: int, out: Path
) -> list[Path]:
    """The train_online graph (aps-launch) on the sim robot in lockstep, until the learner has
    trained on `episodes` episodes; the learner keeps a checkpoint every `every` episodes."""
    from tests.ros_graph_helpers import VENV_BIN, write_params

    env = {k: v for k, v in dataclasses.asdict(cfg.env).items() if k != "tmaze" and v is not None}
    trainer = {"updates_per_step": cfg.updates_per_step, "demo_fraction": cfg.demo_fraction,
               "online_capacity": cfg.online_capacity}  # fmt: skip
    learner_dir = out / "graph"
    params = write_params(
        out / "train_online.yaml",
        {
            "sim_robot": {"task": TASK, "env": env, "lockstep": True, "seeds": [online_seed(0, 0)],
                          # spares: the first few run before the recorder's subscriptions match
                          # (5 of 68 were lost so in one run, which then never reached 64)
                          "max_episodes": episodes + 16},
            "policy": {"task": TASK, "sampling": cfg.explore_sampling, "reliable_sensors": True},
            "robot_interface": {"output": "twist", "control_hz": cfg.env.control_hz,
                                "workspace": {"low": [0.15, -0.4, -0.035], "high": [0.55, 0.4, 0.4]}},
            "recorder": {"dataset": str(out / "online"), "task": TASK, "source": "policy", "reward": "label",
                         "control_hz": cfg.env.control_hz, "min_free_space_mb": 100.0,
                         "onboard_streams": ["wrist/color/image_raw", "joint_states"],
                         "privileged_streams": ["privileged_state"]},
            # at the robot's priority, as the sim job's arm trains: the lockstep loop would take the CPU
            "learner": {"task": TASK, "out_dir": str(learner_dir), "trainer": trainer, "threads": 1,
                        "niceness": 0, "keep_every": every, "save_every": 0},
        },
    )  # fmt: skip
    history = learner_dir / "history"
    with open(out / "graph.log", "w") as log:
        graph = subprocess.Popen(
            [str(VENV_BIN / "aps-launch"), "train_online", f"checkpoint:={checkpoint}", f"demos:={demos}",
             f"params_file:={params}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:  # kept copies are named by the episodes trained on (one may overshoot: two came at once)
            while max((int(p.name.split("-")[1]) for p in history.glob("episodes-*")), default=0) < episodes:
                if graph.poll() is not None:
                    raise RuntimeError(
                        f"the graph stopped (code {graph.returncode}); see {out / 'graph.log'}"
                    )
                time.sleep(2.0)
        finally:
            graph.send_signal(2)
            graph.wait(60)
    return sorted(p for p in history.iterdir() if p.name.startswith("episodes-"))


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from policies.metrics import wilson_interval

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for color, (name, points) in enumerate(curves.items()):
        xs = [p["online_episodes"] for p in points]
        rates = [p["successes"] / p["trials"] for p in points]
        bands = np.array([wilson_interval(p["successes"], p["trials"]) for p in points])
        ax.plot(xs, rates, marker="o", color=f"C{color}", label=name)
        ax.fill_between(xs, bands[:, 0], bands[:, 1], color=f"C{color}", alpha=0.2)
    ax.set(xlabel="online episodes", ylabel="validation success", ylim=(-0.02, 1.02),
           title=f"{TASK}: online AAWR from one offline checkpoint")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.online_graph", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--offline", type=Path, help="an aps-pretrain run folder to start from (else one is run)"
    )
    parser.add_argument("--episodes", type=int, default=64, help="online episodes in each arm")
    parser.add_argument("--every", type=int, default=16, help="online episodes between curve points")
    parser.add_argument("--eval-episodes", type=int, default=32, help="validation episodes per point")
    parser.add_argument("--out", type=Path, default=Path("runs/online_graph"))
    parser.add_argument(
        "settings", nargs="*", help="aps-pretrain overrides for the offline run and both arms"
    )
    args = parser.parse_args(argv)
    if args.episodes % args.every:
        parser.error("--episodes must be a multiple of --every")
    os.environ.setdefault("MUJOCO_GL", "egl")
    args.out.mkdir(parents=True, exist_ok=True)
    run_dir = args.offline or offline_run(args.out, args.settings)
    cfg = load_config(PretrainConfig, run_dir / "config.yaml", args.settings)
    if args.every % cfg.num_envs:
        parser.error(f"--every must be a multiple of num_envs ({cfg.num_envs}): the sim job collects rounds")
    checkpoint = run_dir / "checkpoints" / "aawr-seed0"
    demos_dir = run_dir / "demos" / "seed0"
    demos = EpisodeDataset(demos_dir).load_all()
    started = time.perf_counter()
    kept = {
        "sim job (in-process, vectorised)": sim_job_arm(
            cfg, checkpoint, demos, args.episodes, args.every, args.out
        )
    }
    sim_job_s = time.perf_counter() - started
    started = time.perf_counter()
    kept["train_online graph (ROS 2, lockstep)"] = graph_arm(
        cfg, checkpoint, demos_dir, args.episodes, args.every, args.out
    )
    graph_s = time.perf_counter() - started
    seeds = [validation_seed(i) for i in range(args.eval_episodes)]
    curves = {}
    with VectorEnv(TASK, cfg.num_envs, cfg.env, num_workers=cfg.num_workers) as envs:
        start = curve_point(checkpoint, envs, cfg, seeds)
        for name, folders in kept.items():
            curves[name] = [start] + [curve_point(folder, envs, cfg, seeds) for folder in folders]
    result = {
        "benchmark": "online_graph", "task": TASK, "offline_run": str(run_dir), "episodes": args.episodes,
        "eval_seeds": f"validation_seed(0..{args.eval_episodes - 1})",
        "updates_per_step": cfg.updates_per_step,
        "demo_fraction": cfg.demo_fraction, "wall_s": {"sim_job": round(sim_job_s), "graph": round(graph_s)},
        "curves": curves, "load_average": os.getloadavg(),
    }  # fmt: skip
    plot(curves, args.out / "online_graph.png")
    (args.out / "online_graph.json").write_text(json.dumps(result, indent=2))
    shutil.rmtree(args.out / "online", ignore_errors=True)  # the graph's recorded episodes: not needed after
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
