"""Camera stamp -> published action through the policy node over DDS, p50/p99 at 30 Hz with 128x128
camera images, idle and while a learner trains in another process; and the rate the sim loop holds.

    python -m bench.ros_latency                          # JSON on stdout (about two minutes)
    python -m bench.ros_latency --policy-image-size 84   # a policy that runs at 84x84

The camera sends 128x128 rgb8 frames; the policy node fits them to the checkpoint's image size
(`image_fit`; aps-pretrain's presets train at 32 px, the sim's default `image_size` is 84) and
steps the network. The JSON also gives that network step alone, in-process, on one thread, and
the machine's load average when each condition started (other work on a shared machine moves
every figure here).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from robot_nodes.learner_core import LearnerNodeConfig, learner_threads

CAMERA_SIZE = 128  # pixels, square rgb8 frames at 30 Hz
LEARNERS = {  # a learner's load beside the policy: (niceness, torch threads)
    "learner_training": (0, len(os.sched_getaffinity(0))),  # on every core, as the robot's nodes' equal
    "aps_learner_training": (LearnerNodeConfig.niceness, learner_threads()),  # at aps-learner's defaults
}


def make_checkpoint(folder: Path, image_size: int) -> Path:
    """An untrained actor for search-pick at `image_size`: latency does not depend on the weights."""
    import sim
    from policies.checkpoint import save_checkpoint
    from policies.config import LearnerConfig
    from policies.learner import Learner
    from policies.networks import ObsSpec

    env = sim.make("search-pick", sim.TaskConfig(image_size=image_size))
    obs, _ = env.reset(seed=0)
    spec = ObsSpec.from_arrays(obs["onboard"], obs["privileged"], env.action_space.shape[0])
    env.close()
    return save_checkpoint(Learner(spec, LearnerConfig(algorithm="bc")), folder, "search-pick", 1)


def policy_step(checkpoint: Path, steps: int = 150) -> dict:
    """The network alone, in-process, on one thread (as the policy node runs it): back to back, and
    paced at the camera's 30 Hz, where each step finds its caches taken by other work (slower)."""
    from policies.checkpoint import load_policy
    from policies.runtime import set_torch_threads

    set_torch_threads("act")
    runner = load_policy(checkpoint)
    runner.reset()
    onboard = {
        key: np.zeros(spec.shape, np.uint8 if spec.is_image else np.float32)
        for key, spec in runner.spec.onboard.items()
    }
    result = {}
    for name, pause in (("back_to_back", 0.0), ("at_30hz", 1 / 30)):
        times = []
        for step in range(steps + 20):
            started = time.perf_counter()
            runner.act(onboard)
            if step >= 20:
                times.append((time.perf_counter() - started) * 1e3)
            time.sleep(pause)
        result[name] = percentiles(times)
    return result


def percentiles(milliseconds: list[float] | np.ndarray) -> dict:
    return {f"p{q}_ms": round(float(np.percentile(milliseconds, q)), 3) for q in (50, 99)}


def train_forever(niceness: int, threads: int) -> None:
    """A learner's load: AAWR updates on random 84x84 sequences at a scheduling niceness, on `threads`."""
    import torch

    os.nice(niceness)
    torch.set_num_threads(threads)

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


def measure(policy_checkpoint: Path, frames: int) -> dict:
    """`frames` camera frames (plus a second of warm-up) at 30 Hz; the latency of each action is the
    receipt time minus the stamp of the frames it acted on. Actions are received on an executor
    thread of their own, so the sender's pacing never delays a receipt."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
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
    sender, receiver = rclpy.create_node("latency_camera"), rclpy.create_node("latency_receiver")
    images = sender.create_publisher(Image, "wrist/color/image_raw", sensor_qos())
    joints = sender.create_publisher(JointState, "joint_states", sensor_qos())
    latencies: list[float] = []

    def on_action(msg: Float32MultiArray) -> None:
        stamp, _ = vectors_from_msg(msg)
        latencies.append((receiver.get_clock().now().nanoseconds - stamp) / 1e6)

    receiver.create_subscription(Float32MultiArray, "action", on_action, command_qos(100))
    executor = SingleThreadedExecutor()
    executor.add_node(receiver)
    spinning = threading.Thread(target=executor.spin, daemon=True)
    spinning.start()
    image = np.random.default_rng(0).integers(0, 255, (CAMERA_SIZE, CAMERA_SIZE, 3), dtype=np.uint8)
    names = [*ARM_JOINTS, *FINGER_JOINTS]
    deadline = time.monotonic() + 60
    while sender.count_subscribers("wrist/color/image_raw") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    load = os.getloadavg()[0]
    next_time = time.monotonic() + 1.0
    for _ in range(frames + 30):
        time.sleep(max(0.0, next_time - time.monotonic()))
        stamp = sender.get_clock().now().nanoseconds
        images.publish(image_to_msg(image, stamp, "wrist"))
        joints.publish(joint_state_to_msg(names, np.zeros(len(names)), stamp))
        next_time += 1 / 30
    time.sleep(1.0)
    executor.shutdown()
    spinning.join()
    sender.destroy_node()
    receiver.destroy_node()
    policy.send_signal(signal.SIGINT)  # as aps-launch stops nodes; killed if it does not stop
    try:
        policy.wait(timeout=10)
    except subprocess.TimeoutExpired:
        policy.kill()
        policy.wait()
    values = np.array(latencies[30:])  # the first second warms up
    return {
        "frames": frames, "actions": int(values.size),
        **percentiles(values), "load_average_1min": round(load, 2),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ros_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--policy-image-size", type=int, default=32, help="the checkpoint's image size (the presets': 32 px)"
    )
    parser.add_argument("--frames", type=int, default=600, help="camera frames per condition, at 30 Hz")
    args = parser.parse_args(argv)
    import rclpy

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="aps-bench-log-"))
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = make_checkpoint(Path(folder) / "policy", args.policy_image_size)
        step = policy_step(checkpoint)
        rclpy.init()
        idle = measure(checkpoint, args.frames)
        loaded = {}
        for name, (niceness, threads) in LEARNERS.items():
            learner = multiprocessing.get_context("spawn").Process(
                target=train_forever, args=(niceness, threads), daemon=True
            )
            learner.start()
            time.sleep(3.0)
            loaded[f"camera_to_action_{name}"] = measure(checkpoint, args.frames)
            loaded[f"camera_to_action_{name}"] |= {"learner_niceness": niceness, "learner_threads": threads}
            learner.terminate()
            learner.join()
        rclpy.shutdown()
    result = {
        "camera_image": f"{CAMERA_SIZE}x{CAMERA_SIZE} rgb8 at 30 Hz",
        "policy_image": f"{args.policy_image_size}x{args.policy_image_size}",
        "policy_step_in_process": step,
        "camera_to_action_idle": idle,
        **loaded,
        "sim_loop": sim_loop_rate(),
        "targets": {"idle_p99_ms": 5.0, "training_p99_ms": 10.0}, "cpu_count": os.cpu_count(),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
