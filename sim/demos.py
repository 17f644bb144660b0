"""Scripted demonstrators (they read privileged state) and demo collection.

A demonstrator is a small state machine that outputs an end-effector goal each step; `_Scripted`
turns the goal into the env's action (end-effector or joint deltas) and applies the DemoConfig's
sub-optimality: Gaussian action noise, hesitation (pause or dither), a wrong first search direction,
and a per-episode error in where the script believes the object is (it retries after a failed grasp).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from typing import Any

import gymnasium as gym
import numpy as np

from policies.episodes import Episode, episode_from_steps
from sim.base import ANGLE_STEP, EE_STEP, JOINT_STEP, ArmEnv
from sim.config import DemoConfig, TaskConfig
from sim.pick import CUBE_HALF, LIFT, PickEnv, SearchPickEnv
from sim.scene import ik, wrap_angle
from sim.seeds import demo_seed
from sim.shelf import NUM_PLACES, ShelfSearchEnv, place_centre


class _Scripted:
    """Goal-to-action plumbing and the sub-optimality knobs shared by the arm demonstrators."""

    def __init__(self, env: ArmEnv, config: DemoConfig, seed: int) -> None:
        self.env, self.config = env, config
        self.rng = np.random.default_rng([seed, 7])

    def reset(self) -> None:
        env = self.env
        self.ee, self.yaw, self.pitch = env.home_pos.copy(), 0.0, float(env.home_pitch)
        self.grip = -1.0
        self.wrong_first = bool(self.rng.random() < self.config.wrong_direction_prob)

    def act(self, obs: dict) -> np.ndarray:
        if self.rng.random() < self.config.hesitation_prob:
            size = self.env.action_space.shape[0] - int(self.env.has_gripper)
            arm = np.zeros(size) if self.rng.random() < 0.5 else self.rng.uniform(-0.5, 0.5, size)
            action = np.append(arm, self.grip) if self.env.has_gripper else arm
        else:
            action = self._action(*self.goal(obs))
        # Drawn only when the knob is on, so demos without it keep their random stream.
        if (
            self.env.has_gripper
            and self.config.gripper_flip_prob
            and self.rng.random() < self.config.gripper_flip_prob
        ):
            action[-1] = -action[-1]
        action = action + self.rng.normal(0.0, self.config.action_noise, action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def goal(self, obs: dict) -> tuple[np.ndarray, float, float]:
        """(grasp-point position, yaw or pitch, gripper command) to head for this step."""
        raise NotImplementedError

    def commanded_angle(self) -> float:
        """The wrist yaw (top-down tasks) or pitch the env is commanded to, in either action mode."""
        env = self.env
        if env.config.action_mode == "ee":
            return env.ee_yaw if "yaw" in env.ee_axes else env.ee_pitch
        return self.yaw if "yaw" in env.ee_axes else self.pitch

    def _action(self, target: np.ndarray, angle: float, grip: float) -> np.ndarray:
        env = self.env
        self.grip = grip
        top_down = "yaw" in env.ee_axes
        if env.config.action_mode == "ee":
            turn = wrap_angle(angle - self.commanded_angle())
            arm = np.append((target - env.ee_pos) / EE_STEP, turn / ANGLE_STEP)
        else:  # joint mode: the script keeps its own commanded pose and steps the joints toward its IK
            current = self.commanded_angle()
            self.ee = self.ee + np.clip(target - self.ee, -EE_STEP, EE_STEP)
            turned = current + np.clip(wrap_angle(angle - current), -ANGLE_STEP, ANGLE_STEP)
            self.yaw, self.pitch = (turned, self.pitch) if top_down else (self.yaw, turned)
            goal = ik(self.ee, self.pitch, self.yaw if top_down else None).qpos
            arm = (goal - env._joint_target) / JOINT_STEP
        arm = np.clip(arm, -1.0, 1.0)
        return np.append(arm, grip) if env.has_gripper else arm


class PickDemonstrator(_Scripted):
    """search (search-pick) -> hover over the cube -> descend -> close -> lift; retry if it slipped."""

    HOVER = 0.10  # metres above the cube's centre before descending

    def __init__(self, env: PickEnv, config: DemoConfig, seed: int) -> None:
        super().__init__(env, config, seed)
        self.env: PickEnv = env

    def reset(self) -> None:
        super().reset()
        self.phase = "search" if isinstance(self.env, SearchPickEnv) else "approach"
        self.belief_error = np.append(self.rng.normal(0.0, self.config.grasp_offset, 2), 0.0)
        self.closed_steps = 0
        side = np.sign(self.env.object_pos()[1]) or 1.0
        self.sweep = [-side, side] if self.wrong_first else [side]
        if self.phase == "approach" and self.wrong_first:  # no search: a detour to a wrong spot first
            self.phase = "detour"

    def goal(self, obs: dict) -> tuple[np.ndarray, float, float]:
        env = self.env
        cube = env.object_pos() + self.belief_error
        hover = np.array([cube[0], cube[1], cube[2] + self.HOVER])
        here = env.grasp_point()
        if self.phase == "search":
            if env.object_in_view():
                self.phase = "approach"
            else:
                target = np.array([env.home_pos[0], 0.3 * self.sweep[0], env.home_pos[2]])
                if abs(here[1] - target[1]) < 0.02 and len(self.sweep) > 1:
                    self.sweep.pop(0)
                return target, 0.0, -1.0
        if self.phase == "detour":
            decoy = np.array([hover[0], -np.sign(hover[1] or 1.0) * 0.15, hover[2]])
            if np.linalg.norm(here - decoy) < 0.02:
                self.phase = "approach"
            return decoy, 0.0, -1.0
        yaw = env.object_yaw()
        if self.phase == "approach":
            if (
                np.linalg.norm(here[:2] - hover[:2]) < 0.01
                and abs(wrap_angle(yaw - self.commanded_angle())) < 0.05
            ):
                self.phase = "descend"
            return hover, yaw, -1.0
        if self.phase == "descend":
            if here[2] - cube[2] < 0.008:
                self.phase = "close"
            return np.append(hover[:2], cube[2]), yaw, -1.0
        if self.phase == "close":
            self.closed_steps += 1
            if self.closed_steps >= 3:
                self.phase = "lift"
            return np.append(hover[:2], cube[2]), yaw, 1.0
        # lift: if the cube stays on the table, open and start over with what the script now sees
        if here[2] > CUBE_HALF + LIFT and not env.grasped():
            self.phase, self.closed_steps, self.belief_error = "approach", 0, np.zeros(3)
            return here, yaw, -1.0
        return np.append(here[:2], CUBE_HALF + LIFT + 0.1), yaw, 1.0


def run_episode(env: gym.Env, demonstrator: Any, env_seed: int, attrs: dict[str, Any]) -> Episode:
    obs, _ = env.reset(seed=env_seed)
    demonstrator.reset()
    observations, actions, rewards, terminated, truncated = [obs], [], [], [], []
    success = False
    while True:
        action = demonstrator.act(obs)
        obs, reward, term, trunc, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        success |= bool(info["success"])
        if term or trunc:
            break
    unwrapped = env.unwrapped
    return episode_from_steps(
        observations, actions, rewards, terminated, truncated, unwrapped.control_hz,
        {"task": unwrapped.task_name, "robot": getattr(unwrapped, "robot_name", "sim"), "success": success,
         "seed": env_seed, **attrs},
    )  # fmt: skip


def _collect(task: str, seeds: list[int], task_config: TaskConfig, demo_config: DemoConfig) -> list[Episode]:
    import sim

    env = sim.make(task, task_config)
    attrs = {"source": "scripted", "demo_config": dataclasses.asdict(demo_config)}
    try:
        return [run_episode(env, sim.make_demonstrator(env, demo_config, s), s, attrs) for s in seeds]
    finally:
        env.close()


def collect_demos(
    task: str,
    num_episodes: int,
    seed: int,
    task_config: TaskConfig,
    demo_config: DemoConfig,
    num_workers: int,
) -> list[Episode]:
    seeds = [demo_seed(seed, i) for i in range(num_episodes)]
    if num_workers <= 1 or num_episodes <= 1:
        return _collect(task, seeds, task_config, demo_config)
    chunks = [[int(s) for s in chunk] for chunk in np.array_split(seeds, num_workers) if len(chunk)]
    # spawn: a fresh interpreter per worker (no forked GL contexts or torch threads)
    with multiprocessing.get_context("spawn").Pool(len(chunks)) as pool:
        parts = pool.starmap(_collect, [(task, chunk, task_config, demo_config) for chunk in chunks])
    return [episode for part in parts for episode in part]


class ShelfDemonstrator(_Scripted):
    """Back off in front of the cabinet, level the camera at the compartment's height, then move in
    to look at the target from a standoff. With `wrong_direction_prob` it first looks into another
    compartment."""

    STANDOFF = 0.17  # grasp point to target, along the line of sight from the base
    RETREAT_X = 0.33  # where the camera lines up before moving in
    LOOK_STEPS = 2  # steps spent looking into a wrong compartment

    def __init__(self, env: ShelfSearchEnv, config: DemoConfig, seed: int) -> None:
        super().__init__(env, config, seed)
        self.env: ShelfSearchEnv = env

    def reset(self) -> None:
        super().reset()
        others = [p for p in range(NUM_PLACES) if p != self.env.target_place]
        self.stops = [place_centre(int(self.rng.choice(others)))] if self.wrong_first else []
        self.belief_error = np.append(self.rng.normal(0.0, self.config.grasp_offset, 2), 0.0)
        self.looked = 0

    def goal(self, obs: dict) -> tuple[np.ndarray, float, float]:
        spot = self.stops[0] if self.stops else self.env.target_pos() + self.belief_error
        radial = spot[:2] / np.linalg.norm(spot[:2])
        view = np.append(spot[:2] - self.STANDOFF * radial, spot[2] + 0.02)
        here = self.env.grasp_point()
        if self.stops and np.linalg.norm(here - view) < 0.02:
            self.looked += 1
            if self.looked >= self.LOOK_STEPS:
                self.stops.pop(0)
        if np.linalg.norm(here[1:] - view[1:]) > 0.03 or abs(self.commanded_angle()) > 0.05:
            return np.array([min(here[0], self.RETREAT_X), view[1], view[2]]), 0.0, -1.0
        return view, 0.0, -1.0
