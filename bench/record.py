"""Two 640x480 cameras at 30 Hz over DDS into aps-recorder: the sustained rate, the drops, and the
recorder's memory over a long episode (sampled every second; target: flat).

    python -m bench.record                     # a 2-minute episode; JSON on stdout
    python -m bench.record --seconds 30        # the 30 s run
    python -m bench.record --depth 30          # the robot's writers keep 30 messages (default: 5)

A publisher process stands in for the robot: two rgb8 cameras (MuJoCo renders of the search-pick
scene at 640x480, cycled, so the images compress like real ones), joint_states, the privileged
vector and the teleop's action, all stamped with one stamp per tick at 30 Hz; images over 512 KB go
reliable (robot_nodes.qos.image_qos), as the camera node publishes them. The recorder runs as its
own process with the graph's settings; this process starts and ends the episode on
`episode_control` and reads the result from the recorder's `~/episodes` record and its file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HZ = 30.0
WIDTH, HEIGHT = 640, 480
CAMERAS = ("cam0", "cam1")
FRAMES = 60  # distinct rendered frames, cycled


def rendered_frames() -> list[np.ndarray]:
    """The search-pick scene from its side camera at 640x480, while the scripted expert moves."""
    import mujoco

    import sim

    env = sim.make("search-pick", sim.TaskConfig(image_size=32, max_episode_steps=FRAMES))
    expert = sim.make_demonstrator(env, seed=0)
    obs, _ = env.reset(seed=0)
    expert.reset()
    env.model.vis.global_.offwidth = max(env.model.vis.global_.offwidth, WIDTH)
    renderer = mujoco.Renderer(env.model, HEIGHT, WIDTH)
    frames = []
    for _ in range(FRAMES):
        renderer.update_scene(env.data, camera="side")
        frames.append(renderer.render().copy())
        obs, *_ = env.step(expert.act(obs))
    renderer.close()
    env.close()
    return frames


def publish(seconds: float, depth: int) -> None:
    """The robot's side: every stream at 30 Hz until `seconds` have passed; prints its counts.
    `depth`: the history of each reliable writer (the stack's sensor QoS keeps 5): a reader that
    lags by more loses the oldest unacknowledged messages at the writer."""
    import rclpy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float32MultiArray

    from robot_nodes.messages import image_to_msg, joint_state_to_msg, vectors_to_msg
    from robot_nodes.qos import command_qos, image_qos
    from sim.scene import ARM_JOINTS, FINGER_JOINTS

    frames = rendered_frames()
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)  # Ctrl-C: print the counts
    node = rclpy.create_node("bench_robot")
    qos = image_qos(WIDTH, HEIGHT, 3)
    qos.depth = depth
    cameras = {c: node.create_publisher(Image, f"{c}/color/image_raw", qos) for c in CAMERAS}
    joints = node.create_publisher(JointState, "joint_states", qos)
    privileged = node.create_publisher(Float32MultiArray, "privileged_state", qos)
    actions = node.create_publisher(Float32MultiArray, "action", command_qos(depth))
    names = [*ARM_JOINTS, *FINGER_JOINTS]
    start = time.monotonic()
    ticks, late = 0, 0
    try:
        while time.monotonic() - start < seconds:
            stamp = node.get_clock().now().nanoseconds
            for index, (camera, publisher) in enumerate(cameras.items()):
                frame = frames[(ticks + 7 * index) % FRAMES]
                publisher.publish(image_to_msg(frame, stamp, f"{camera}_optical_frame"))
            joints.publish(joint_state_to_msg(names, np.full(len(names), 0.01 * (ticks % 100)), stamp))
            privileged.publish(vectors_to_msg({"object_pos": np.array([0.4, 0.0, 0.02])}, stamp))
            actions.publish(vectors_to_msg({"action": np.zeros(5, np.float32)}, stamp))
            ticks += 1
            next_tick = start + ticks / HZ
            late += next_tick < time.monotonic()
            time.sleep(max(0.0, next_tick - time.monotonic()))
    except KeyboardInterrupt:
        pass
    print(json.dumps({"ticks": ticks, "late_ticks": late, "seconds": time.monotonic() - start}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(seconds: float, depth: int) -> dict:
    import rclpy
    from std_msgs.msg import String

    from robot_nodes.qos import command_qos, latched_qos
    from tests.ros_graph_helpers import VENV_BIN, spin_until, write_params

    folder = Path(tempfile.mkdtemp(prefix="aps-bench-record-"))
    env = {**os.environ, "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))}
    env.setdefault("ROS_LOG_DIR", str(folder / "log"))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.update(env)
    params = write_params(
        folder / "recorder.yaml",
        {"recorder": {
            "dataset": str(folder / "episodes"), "task": "search-pick", "control_hz": HZ,
            "episodes": "control", "reward": "label", "sync_tolerance": 0.01, "send_episodes": False,
            "min_free_space_mb": 1.0,
            "onboard_streams": [f"{c}/color/image_raw" for c in CAMERAS] + ["joint_states"],
            "privileged_streams": ["privileged_state"], "stale_after": 2.0, "startup_timeout": 60.0,
        }},
    )  # fmt: skip
    warmup = 20.0  # the publisher renders its frames, the recorder starts
    robot = subprocess.Popen(
        [sys.executable, "-m", "bench.record", "--publish", str(seconds + warmup + 10),
         "--depth", str(depth)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    recorder_log = open(folder / "recorder.log", "w")  # noqa: SIM115 (closed below)
    recorder = subprocess.Popen(
        [str(VENV_BIN / "aps-recorder"), "--ros-args", "--params-file", str(params)],
        stdout=recorder_log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    rclpy.init()
    node = rclpy.create_node("bench_operator")
    records: list[dict] = []
    control = node.create_publisher(String, "episode_control", command_qos())
    node.create_subscription(
        String, "recorder/episodes", lambda m: records.append(json.loads(m.data)), latched_qos(10)
    )
    try:
        ready = spin_until(node, lambda: "recording [" in (folder / "recorder.log").read_text(), 90)
        assert ready, (folder / "recorder.log").read_text()[-2000:]
        spin_until(node, lambda: False, 3.0)  # the recorder takes frames before the episode starts
        control.publish(String(data=json.dumps({"command": "start"})))
        started = time.monotonic()
        memory = []
        while time.monotonic() - started < seconds:
            spin_until(node, lambda: False, 1.0)
            memory.append([round(time.monotonic() - started, 1), round(rss_mb(recorder.pid), 1)])
        control.publish(String(data=json.dumps({"command": "end", "success": True})))
        assert spin_until(node, lambda: records, 60), (folder / "recorder.log").read_text()[-2000:]
    finally:
        recorder.send_signal(2)
        recorder.wait(30)
        recorder_log.close()
        robot.send_signal(2)
        published = robot.communicate(timeout=30)[0]
        node.destroy_node()
        rclpy.shutdown()
    record = records[0]
    sync = record["sync"]
    path = Path(record["path"])
    size_mb = path.stat().st_size / 1e6
    rss = np.array([m for _, m in memory])
    half = len(rss) // 2
    result = {
        "benchmark": "record",
        "cameras": f"{len(CAMERAS)} x {WIDTH}x{HEIGHT} rgb8 at {HZ:g} Hz, reliable (over 512 KB)",
        "writer_history": depth,
        "episode_seconds": seconds,
        "steps_recorded": record["steps"],
        "sustained_hz": round(record["steps"] / seconds, 2),
        "dropped_steps": sync["dropped_steps"],
        "out_of_tolerance": sum(s["out_of_tolerance"] for s in sync["streams"].values()),
        "repeated_frames": sum(s["repeated"] for s in sync["streams"].values()),
        "status": record["status"],
        "publisher": json.loads(published.strip().splitlines()[-1]) if published.strip() else None,
        "file_mb": round(size_mb, 1),
        "written_mb_per_s": round(size_mb / seconds, 1),
        "raw_mb_per_s": round(len(CAMERAS) * WIDTH * HEIGHT * 3 * HZ / 1e6, 1),
        "rss_mb_first_half_mean": round(float(rss[:half].mean()), 1),
        "rss_mb_second_half_mean": round(float(rss[half:].mean()), 1),
        "rss_mb_max": round(float(rss.max()), 1),
        "rss_mb_per_minute_slope": round(float(np.polyfit([t for t, _ in memory], rss, 1)[0] * 60), 2),
        "rss_mb_every_10s": [m for m in memory if m[0] % 10 < 1.0],
        "load_average": os.getloadavg(),
    }
    shutil.rmtree(folder)  # the episode: gigabytes
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.record", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="episode length")
    parser.add_argument("--depth", type=int, default=5, help="history of the robot's reliable writers")
    parser.add_argument(
        "--publish", type=float, metavar="SECONDS", help=argparse.SUPPRESS
    )  # the robot's side
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.publish is not None:
        publish(args.publish, args.depth)
        return 0
    print(json.dumps(run(args.seconds, args.depth), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
