"""Sensor nodes' speed, printed as JSON: the tracker's time per image, and the camera node's delivery.

    MUJOCO_GL=egl python -m bench.sensors [--frames 90] [--size 640x480]

"tracker": ArUco and colour tracking of one rendered side-camera image (the test scene,
tests/tracker_scene.py), p50 / p99 ms. "camera": aps-camera in its own process plays a colour +
aligned-depth recording at 30 fps over DDS (reliable); the subscriber's receipt time minus the
image's stamp (ROS time of the frame's arrival at the node), p50 / p99 ms, and the frames received.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from calibration.camera_info import CameraInfo, write_camera_info
from robot_nodes.realsense_recording import write_recording
from robot_nodes.tracker_core import ArucoConfig, PrivilegedTracker, TrackerNodeConfig
from tests.tracker_scene import CUBE_HALF, MARKER_ID, MARKER_LENGTH, POSES, TrackerScene


def percentiles(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(values_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(values_ms, 99)), 3),
    }


def tracker(folder: Path, repeats: int) -> dict:
    scene = TrackerScene(folder)
    info, extrinsics = scene.write_calibration()
    aruco = ArucoConfig(
        marker_id=MARKER_ID, marker_length_m=MARKER_LENGTH, object_offset_m=[0, 0, -CUBE_HALF]
    )
    results = {}
    for source in ("aruco", "color"):
        core = PrivilegedTracker(
            TrackerNodeConfig(
                source=source, camera_info_path=str(info), extrinsics_path=str(extrinsics), aruco=aruco
            )
        )
        images = [scene.render(x, y, yaw, marker=source == "aruco") for x, y, yaw in POSES]
        times, stamp = [], 0
        for _ in range(repeats):
            for image in images:
                stamp += 1
                start = time.perf_counter()
                core.tracker.track(image, stamp)
                times.append((time.perf_counter() - start) * 1000)
        results[source] = percentiles(times)
    return results


def camera(folder: Path, frames: int, width: int, height: int) -> dict:
    import rclpy
    from sensor_msgs.msg import Image

    from robot_nodes.messages import from_time
    from robot_nodes.qos import sensor_qos

    rclpy.init()  # before pyrealsense2 is loaded (cameras.load_pyrealsense2 says why)
    rng = np.random.default_rng(0)
    colours = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]
    depths = [np.full((height, width), 1000, np.uint16) for _ in range(frames)]
    matrix = np.array([[600.0, 0, (width - 1) / 2], [0, 600.0, (height - 1) / 2], [0, 0, 1]])
    info = CameraInfo("bench", (width, height), matrix, np.zeros(5))
    write_recording(folder / "bench.db3", colours, depths, info)
    write_camera_info(info, folder / "bench.yaml")
    params = {"camera": {"ros__parameters": {
        "camera_name": "bench", "type": "recording", "camera_info_path": str(folder / "bench.yaml"),
        "recording": {"path": str(folder / "bench.db3"), "depth": True}, "wait_for_subscriber_s": 30.0,
    }}}  # fmt: skip
    (folder / "camera.yaml").write_text(yaml.safe_dump(params))

    node = rclpy.create_node("bench_camera_probe")
    latencies: list[float] = []

    def received(msg: Image) -> None:
        latencies.append((node.get_clock().now().nanoseconds - from_time(msg.header.stamp)) / 1e6)

    node.create_subscription(Image, "bench/color/image_raw", received, sensor_qos(reliable=True))
    executable = Path(sys.executable).parent / "aps-camera"
    process = subprocess.Popen(
        [str(executable), "--ros-args", "--params-file", str(folder / "camera.yaml")],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30 + frames / 30
        while len(latencies) < frames and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        node.destroy_node()
        rclpy.shutdown()
    return {
        "size": f"{width}x{height}",
        "fps": 30,
        "frames": frames,
        "received": len(latencies),
        **percentiles(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=90, help="frames of the camera recording")
    parser.add_argument("--size", default="640x480", help="camera image size WxH")
    parser.add_argument("--repeats", type=int, default=20, help="tracker passes over the 5 poses")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        result = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "tracker_640x480": tracker(Path(folder), args.repeats),
            "camera": camera(Path(folder), args.frames, width, height),
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
