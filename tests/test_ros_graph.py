"""The graph over real DDS on loopback, each node in its own process (tier c): parity with the
in-process policy, the watchdog after kill -9, and the sim graph started by aps-launch."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess

import numpy as np
import pytest

import sim
from policies.checkpoint import load_policy
from policies.metrics import wilson_interval
from robot_nodes.messages import EpisodeEvent, from_time, joint_state_arrays, vectors_from_msg
from robot_nodes.policy_core import draw_seed
from tests.ros_graph_helpers import VENV_BIN, spin_until, stop, train_tiny_policy, write_params

TASK = "search-pick"
STEPS = 20
SEEDS = [1_000_000 + i for i in range(8)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    checkpoint, cfg = train_tiny_policy(tmp_path_factory.mktemp("pretrain"), TASK, STEPS)
    return checkpoint, cfg


@pytest.fixture(scope="module")
def ros():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.shutdown()


def in_process(checkpoint, env_config, seeds, sampling="component", seed=0):
    """The same policy run in-process on the same seeds with the same per-episode draws."""
    runner = load_policy(checkpoint, TASK, sampling, seed)
    env = sim.make(TASK, env_config)
    episodes = []
    for episode_seed in seeds:
        obs, _ = env.reset(seed=episode_seed)
        runner.reset()
        runner.generator.manual_seed(draw_seed(seed, episode_seed))
        actions, success, done = [], False, False
        while not done:
            action = runner.act(obs["onboard"]).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            actions.append(action)
            success |= info["success"]
            done = terminated or truncated
        episodes.append((np.array(actions), success))
    env.close()
    return episodes


def launch_sim_graph(tmp_path, checkpoint, env_config, seeds, output="twist", lockstep=True, extra=None):
    extra = extra or {}
    # a ROS parameter cannot be null: an Optional setting left at None is left out
    env = {k: v for k, v in dataclasses.asdict(env_config).items() if k != "tmaze" and v is not None}
    command_input = output
    params = write_params(
        tmp_path / f"graph-{output}.yaml",
        {
            "sim_robot": {"task": TASK, "env": env, "lockstep": lockstep, "command_input": command_input,
                          "seeds": seeds, "max_episodes": len(seeds), **extra.get("sim_robot", {})},
            "policy": {"task": TASK, "sampling": "component", "seed": 0, "reliable_sensors": lockstep,
                       "max_frame_age": 0.5, **extra.get("policy", {})},
            "robot_interface": {"output": output, "control_hz": env_config.control_hz,
                                **extra.get("robot_interface", {})},
        },
    )  # fmt: skip
    log = open(tmp_path / f"launch-{output}.log", "w")  # noqa: SIM115 (closed by the test's end)
    process = subprocess.Popen(
        [str(VENV_BIN / "aps-launch"), "sim", f"checkpoint:={checkpoint}", f"params_file:={params}"],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )  # fmt: skip
    return process, tmp_path / f"launch-{output}.log"


class GraphProbe:
    """Episode events and actions of a graph, subscribed before the graph starts so none is missed."""

    def __init__(self, ros, name: str = "parity_probe") -> None:
        from std_msgs.msg import Float32MultiArray, String

        from robot_nodes.qos import command_qos, latched_qos

        self.node = ros.create_node(name)
        self.events: list[EpisodeEvent] = []
        self.actions: list[tuple[int, dict]] = []
        self.node.create_subscription(String, "episode_events", self.on_event, latched_qos(10))
        self.node.create_subscription(
            Float32MultiArray, "action", lambda m: self.actions.append(vectors_from_msg(m)), command_qos(100)
        )

    def on_event(self, msg) -> None:
        event = EpisodeEvent.from_msg(msg)
        if event not in self.events:  # a transient-local history may repeat what also came live
            self.events.append(event)

    def episodes(self, count: int, timeout: float) -> list[tuple[EpisodeEvent, np.ndarray]]:
        """The first `count` episodes' end events and actions, grouped per episode by stamp."""
        ended = lambda: sum(e.kind == "end" for e in self.events)  # noqa: E731
        assert spin_until(self.node, lambda: ended() >= count, timeout), (
            f"the graph finished {ended()} of {count} episodes"
        )
        starts = {e.episode: e for e in self.events if e.kind == "start"}
        episodes = []
        for end in [e for e in self.events if e.kind == "end"][:count]:
            start = starts[end.episode]
            taken = [a["action"] for stamp, a in self.actions if start.stamp_ns <= stamp < end.stamp_ns]
            episodes.append((end, np.array(taken)))
        return episodes

    def close(self) -> None:
        self.node.destroy_node()


def test_parity_on_the_twist_path(trained, ros, tmp_path) -> None:
    checkpoint, cfg = trained
    expected = in_process(checkpoint, cfg.env, SEEDS)
    probe = GraphProbe(ros)
    process, log = launch_sim_graph(tmp_path, checkpoint, cfg.env, SEEDS)
    try:
        episodes = probe.episodes(len(SEEDS), timeout=90)
    finally:
        probe.close()
        stop(process)
    assert [end.seed for end, _ in episodes] == SEEDS
    for (end, actions), (reference, success) in zip(episodes, expected, strict=True):
        assert end.steps == len(reference) == len(actions), log.read_text()[-2000:]
        np.testing.assert_allclose(actions, reference, atol=1e-5)
        assert end.success == success


def test_joint_target_path_through_pinocchio(trained, ros, tmp_path) -> None:
    checkpoint, cfg = trained
    expected = in_process(checkpoint, cfg.env, SEEDS)
    probe = GraphProbe(ros)
    process, _ = launch_sim_graph(tmp_path, checkpoint, cfg.env, SEEDS, output="joint_trajectory")
    try:
        episodes = probe.episodes(len(SEEDS), timeout=90)
    finally:
        probe.close()
        stop(process)
    assert [end.seed for end, _ in episodes] == SEEDS
    successes = sum(end.success for end, _ in episodes)
    low, high = wilson_interval(sum(success for _, success in expected), len(expected))
    assert low <= successes / len(SEEDS) <= high
    for (end, actions), (reference, _) in zip(episodes, expected, strict=True):
        assert end.steps == len(actions) and len(actions) >= 1
        # the first observation is the reset's, the same in both: so is the first action
        np.testing.assert_allclose(actions[0], reference[0], atol=1e-5)


def test_kill_9_of_the_policy_holds_the_arm(trained, ros, tmp_path) -> None:
    """Wall clock at 50 Hz; a policy that moves the arm sideways at 10 cm/s is killed; the robot
    interface's watchdog (200 ms) must hold the arm, seen on the sim's joint velocities."""
    import torch
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import JointState

    from policies.checkpoint import load_learner, save_checkpoint
    from robot_nodes.qos import command_qos, sensor_qos
    from sim.scene import ARM_JOINTS

    checkpoint, cfg = trained
    learner, card = load_learner(checkpoint, TASK)
    head = learner.actor.head[-1]
    with torch.no_grad():  # every mixture component acts at [0, 0.05, 0, 0, -1]: a steady sideways move
        head.weight.zero_()
        head.bias.zero_()
        means = head.bias[learner.actor.modes :].view(learner.actor.modes, 2, card.spec.action_dim)
        means[:, 0] = torch.atanh(torch.tensor([0.0, 0.05, 0.0, 0.0, -0.999]))
        means[:, 1] = -5.0  # log std
    mover = save_checkpoint(learner, tmp_path / "mover", TASK, version=1)
    env_config = dataclasses.replace(cfg.env, control_hz=50.0, max_episode_steps=100_000)
    process, log = launch_sim_graph(
        tmp_path, mover, env_config, [0], lockstep=False,
        extra={"policy": {"max_frame_age": 0.2}, "robot_interface": {"watchdog_timeout": 0.2}},
    )  # fmt: skip
    node = ros.create_node("kill_probe")
    samples, holds = [], []

    def on_joints(msg: JointState) -> None:
        samples.append((from_time(msg.header.stamp), np.abs(joint_state_arrays(msg, ARM_JOINTS)[1]).max()))

    node.create_subscription(JointState, "joint_states", on_joints, sensor_qos())
    node.create_subscription(
        TwistStamped, "servo_node/delta_twist_cmds",
        lambda m: holds.append(node.get_clock().now().nanoseconds) if m.twist.linear.y == 0.0 else None,
        command_qos(100),
    )  # fmt: skip
    try:
        moving = spin_until(node, lambda: len(samples) > 20 and all(v > 0.1 for _, v in samples[-10:]), 60)
        assert moving, f"the arm never moved steadily: {samples[-10:]}\n{log.read_text()[-3000:]}"
        pid = int(re.search(r"started policy \(pid (\d+)\)", log.read_text()).group(1))
        killed = node.get_clock().now().nanoseconds
        os.kill(pid, signal.SIGKILL)
        spin_until(node, lambda: samples[-1][0] > killed + 1e9, 10)
    finally:
        node.destroy_node()
        stop(process)
    before = np.median([speed for stamp, speed in samples if stamp <= killed][-10:])
    after = [(stamp, speed) for stamp, speed in samples if stamp > killed]
    braking = next(stamp for stamp, speed in after if speed < 0.5 * before)
    still = next(after[i][0] for i in range(len(after)) if all(v < 0.01 for _, v in after[i:]))
    hold_s = (min(h for h in holds if h > killed) - killed) / 1e9
    brake_s, still_s = (braking - killed) / 1e9, (still - killed) / 1e9
    print(
        f"kill -9 -> hold {hold_s * 1e3:.0f} ms, braking {brake_s * 1e3:.0f} ms, still {still_s * 1e3:.0f} ms"
    )
    # The watchdog counts 200 ms from the last action's camera stamp (<= 20 ms before the kill at
    # 50 Hz) and looks every 10 ms; the sim applies the hold at its next 20 ms step, where the
    # joints (position servos) start braking: their velocity halves within that step. How long
    # they then take to come to rest is the arm's own dynamics, not the interface's.
    assert hold_s <= 0.2 + 0.04
    assert brake_s <= 0.2 + 0.04 + 0.02
    assert still_s <= brake_s + 0.3
