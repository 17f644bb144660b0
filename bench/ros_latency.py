"""Camera stamp -> published action through the policy node over DDS, p50/p99 at 30 Hz with 128x128
images, idle and while a learner trains in another process; and the rate the sim loop holds.

    python -m bench.ros_latency            # JSON on stdout (about a minute)
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAMES = 300  # per condition, at 30 Hz


def make_checkpoint(folder: Path) -> Path:
    """An untrained actor for search-pick at 128x128: latency does not depend on the weights."""
    import sim
    from policies.checkpoint import save_checkpoint
    from policies.config import LearnerConfig
    from policies.learner import Learner
    from policies.networks import ObsSpec

    env = sim.make("search-pick", sim.TaskConfig(image_size=128))
    obs, _ = env.reset(seed=0)
    spec = ObsSpec.from_arrays(obs["onboard"], obs["privileged"], env.action_space.shape[0])
    env.close()
    return save_checkpoint(Learner(spec, LearnerConfig(algorithm="bc")), folder, "search-pick", 1)


def train_forever() -> None:
    """A learner's load: AAWR updates on random 84x84 sequences, on every core torch takes."""
    import torch

    from policies.config import LearnerConfig
    from policies.networks import Actor, ObsSpec

    spec = ObsSpec.from_arrays(
        {"wrist": np.zeros((84, 84, 3), np.uint8), "joints": np.zeros(6, np.float32)}, {}, 5
    )
    actor = Actor(spec, LearnerConfig().network)
    optimizer = torch.optim.Adam(actor.parameters())
    batch = {
        "wrist": torch.randint(0, 255, (32, 16, 84, 84, 3), dtype=torch.uint8),
        "joints": torch.randn(32, 16, 6),
    }
    while True:
        dist, _ = actor(batch, actor.initial_state(32))
        loss = -dist.log_prob(torch.zeros(32, 16, 5)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def measure(policy_checkpoint: Path) -> dict:
    import rclpy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float32MultiArray

    from robot_nodes.messages import image_to_msg, joint_state_to_msg, vectors_from_msg
    from robot_nodes.qos import command_qos, sensor_qos
    from sim.scene import ARM_JOINTS, FINGER_JOINTS

    bin_dir = Path(sys.executable).parent
    policy = subprocess.Popen(
        [str(bin_dir / "aps-policy"), "--ros-args", "-p", f"checkpoint:={policy_checkpoint}",
         "-p", "episodes_from_events:=false", "-p", "max_frame_age:=1.0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    node = rclpy.create_node("latency_bench")
    images = node.create_publisher(Image, "wrist/color/image_raw", sensor_qos())
    joints = node.create_publisher(JointState, "joint_states", sensor_qos())
    latencies: list[float] = []

    def on_action(msg: Float32MultiArray) -> None:
        stamp, _ = vectors_from_msg(msg)
        latencies.append((node.get_clock().now().nanoseconds - stamp) / 1e6)

    node.create_subscription(Float32MultiArray, "action", on_action, command_qos(100))
    image = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    names = [*ARM_JOINTS, *FINGER_JOINTS]
    deadline = time.monotonic() + 60
    while node.count_subscribers("wrist/color/image_raw") == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    sent = 0
    next_time = time.monotonic() + 1.0
    while sent < FRAMES + 30:
        rclpy.spin_once(node, timeout_sec=max(0.0, next_time - time.monotonic()))
        if time.monotonic() >= next_time:
            stamp = node.get_clock().now().nanoseconds
            images.publish(image_to_msg(image, stamp, "wrist"))
            joints.publish(joint_state_to_msg(names, np.zeros(len(names)), stamp))
            sent += 1
            next_time += 1 / 30
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    policy.terminate()
    policy.wait()
    values = np.array(latencies[30:])  # the first second warms up
    return {
        "frames": FRAMES, "actions": int(values.size),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
    }  # fmt: skip


def sim_loop_rate() -> dict:
    """Steps per second of the sim robot's core (render + step, 128x128 wrist camera)."""
    from robot_nodes.sim_robot_core import SimRobotConfig, SimRobotCore
    from sim.config import TaskConfig

    core = SimRobotCore(
        SimRobotConfig(task="search-pick", env=TaskConfig(image_size=128, max_episode_steps=1000))
    )
    core.reset(0, core.sim_stamp())
    started, steps = time.perf_counter(), 200
    for _ in range(steps):
        core.step(core.sim_stamp())
    rate = steps / (time.perf_counter() - started)
    core.close()
    return {"steps_per_s_128px": round(rate, 1), "control_hz_needed": 10.0}


def main() -> int:
    import rclpy

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="aps-bench-log-"))
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = make_checkpoint(Path(folder) / "policy")
        rclpy.init()
        idle = measure(checkpoint)
        learner = multiprocessing.get_context("spawn").Process(target=train_forever, daemon=True)
        learner.start()
        time.sleep(3.0)
        loaded = measure(checkpoint)
        learner.terminate()
        learner.join()
        rclpy.shutdown()
    result = {
        "camera_to_action_idle": idle,
        "camera_to_action_learner_training": loaded,
        "sim_loop": sim_loop_rate(),
        "targets": {"idle_p99_ms": 5.0, "training_p99_ms": 10.0}, "cpu_count": os.cpu_count(),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
