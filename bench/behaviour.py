"""How trained policies move on a pick task, not only whether they succeed; printed as JSON.

    python -m bench.behaviour runs/<run>/checkpoints/aawr-seed0 runs/<run>/checkpoints/awr-seed0

Per checkpoint, on the job's held-out evaluation seeds, with the task settings it was trained with:

    success              share of episodes that lift the cube
    wrong_side_first     of the episodes whose cube lies off the centre line (|y| > 5 cm), the share
                         whose gripper first crosses 5 cm to the other side (a detour, or a search
                         that starts on the wrong side)
    steps_to_reach       median step at which the grasp point first comes within 2 cm of the cube
                         in the table plane
    steps_to_success     median length of the successful episodes

On camouflage-pick these tell a policy that sees the cube (it heads straight for it) from one that
copies the demos' detours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import sim
from apsconfig import load_config
from policies.checkpoint import load_policy
from policies.runtime import set_torch_threads
from sim.config import TaskConfig
from sim.seeds import held_out_seed
from sim.view import trained_task_settings

OFF_CENTRE = 0.05  # metres off the centre line in y: where a side counts as chosen
REACH = 0.02  # metres between grasp point and cube, in the table plane


@dataclass
class Trace:
    """One episode: the grasp point's (x, y) after every step, the cube's (x, y) at the start."""

    grasp_xy: np.ndarray  # [T, 2]
    cube_xy: np.ndarray  # [2]
    success_step: int | None  # 1-based step of success, None if it failed


def first_side(y: np.ndarray) -> float:
    """The sign of the first y beyond OFF_CENTRE, 0 if the gripper never leaves the centre band."""
    beyond = np.flatnonzero(np.abs(y) > OFF_CENTRE)
    return float(np.sign(y[beyond[0]])) if beyond.size else 0.0


def summarise(traces: list[Trace]) -> dict:
    def median(values: list[int]) -> float | None:
        return float(np.median(values)) if values else None

    sided = [t for t in traces if abs(t.cube_xy[1]) > OFF_CENTRE]
    wrong = [first_side(t.grasp_xy[:, 1]) == -np.sign(t.cube_xy[1]) for t in sided]
    reach = []
    for t in traces:
        near = np.flatnonzero(np.linalg.norm(t.grasp_xy - t.cube_xy, axis=1) < REACH)
        if near.size:
            reach.append(int(near[0]) + 1)
    successes = [t.success_step for t in traces if t.success_step is not None]
    return {
        "episodes": len(traces),
        "success": round(len(successes) / len(traces), 3),
        "wrong_side_first": round(float(np.mean(wrong)), 3) if wrong else None,
        "reached": round(len(reach) / len(traces), 3),
        "steps_to_reach": median(reach),
        "steps_to_success": median(successes),
    }


def trace_checkpoint(checkpoint: Path, episodes: int) -> list[Trace]:
    policy = load_policy(checkpoint, seed=held_out_seed(0))
    task = policy.card.task
    config = load_config(TaskConfig, trained_task_settings(checkpoint, policy))
    env = sim.make(task, config)
    traces = []
    try:
        if not hasattr(env, "object_pos"):
            raise ValueError(f"{checkpoint}: task {task} has no cube to reach (pick tasks only)")
        for index in range(episodes):
            obs, _ = env.reset(seed=held_out_seed(index))
            policy.reset()
            cube_xy, grasp_xy, success_step = env.object_pos()[:2], [], None
            for step in range(1, env.max_episode_steps + 1):
                obs, _, terminated, truncated, info = env.step(policy.act(obs["onboard"]))
                grasp_xy.append(env.grasp_point()[:2])
                if info["success"] and success_step is None:
                    success_step = step
                if terminated or truncated:
                    break
            traces.append(Trace(np.array(grasp_xy), cube_xy, success_step))
    finally:
        env.close()
    return traces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=64)
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    set_torch_threads("act")
    report = {"bench": "behaviour", "episodes": args.episodes, "checkpoints": {}}
    try:
        for checkpoint in args.checkpoints:
            report["checkpoints"][str(checkpoint)] = summarise(trace_checkpoint(checkpoint, args.episodes))
    except ValueError as err:  # CheckpointError and ConfigError are ValueErrors
        print(f"bench.behaviour: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
