"""aps-camera in its own process over DDS: a RealSense recording made with pyrealsense2's
software_device (640x480 colour + depth) plays through the node, and every frame arrives in order
with the recorded stamps, encodings, sizes and CameraInfo. Missing devices are one log line and
retries; a calibration for another resolution stops the node with exit status 2."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sensor_node_helpers import (
    load_ros_middleware_first,
    log_lines,
    probe,
    spin_until,
    start,
    stop,
    write_params,
)

from calibration.camera_info import CameraInfo, write_camera_info
from robot_nodes.realsense_recording import FIRST_TIMESTAMP_MS, write_recording

WIDTH, HEIGHT, FRAMES, WARMUP = 640, 480, 12, 2  # 921,600-byte images: over best effort's ~512 KB
INFO = CameraInfo(
    "side",
    (WIDTH, HEIGHT),
    np.array([[610.0, 0, 319.5], [0, 612.0, 241.0], [0, 0, 1]]),
    np.array([0.1, -0.2, 0, 0, 0]),
)


def colour(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def depth(i: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH), 1000 + i, np.uint16)


@pytest.fixture(scope="module", autouse=True)
def ros_middleware_before_pyrealsense2() -> None:
    load_ros_middleware_first()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("camera_node")
    write_recording(
        folder / "side.db3", [colour(i) for i in range(FRAMES)], [depth(i) for i in range(FRAMES)], INFO
    )
    write_camera_info(INFO, folder / "side.yaml")
    return folder / "side.db3", folder / "side.yaml"


def test_recording_plays_through_the_node_frame_by_frame(
    recording: tuple[Path, Path], tmp_path: Path
) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo as CameraInfoMsg
    from sensor_msgs.msg import Image

    from robot_nodes.messages import from_time, image_from_msg
    from robot_nodes.qos import latched_qos

    path, info_path = recording
    params = write_params(tmp_path / "camera.yaml", "camera", {
        "camera_name": "side", "type": "recording", "camera_info_path": str(info_path),
        "recording": {"path": str(path), "depth": True, "warmup_frames": WARMUP},
        "wait_for_subscriber_s": 30.0,  # play from the first frame once the probe listens
        "image_queue": FRAMES,  # as for a recorder: every frame kept for a slow subscriber
    })  # fmt: skip
    received: dict[str, list] = {"color": [], "color_info": [], "depth": [], "depth_info": []}
    # Like a recorder that wants every frame: reliable, with a history deep enough for a busy reader.
    every_frame = QoSProfile(depth=FRAMES, reliability=ReliabilityPolicy.RELIABLE)
    with probe("camera_probe") as node:
        for key, topic, kind, qos in (
            ("color", "side/color/image_raw", Image, every_frame),
            ("color_info", "side/color/camera_info", CameraInfoMsg, latched_qos()),
            ("depth", "side/aligned_depth_to_color/image_raw", Image, every_frame),
            ("depth_info", "side/aligned_depth_to_color/camera_info", CameraInfoMsg, latched_qos()),
        ):
            node.create_subscription(
                kind, topic, lambda msg, key=key: received[key].append((time.time_ns(), msg)), qos
            )
        log = tmp_path / "camera.log"
        process = start("aps-camera", params, log)
        try:
            expected = FRAMES - WARMUP
            assert spin_until(
                node, lambda: len(received["color"]) >= expected and len(received["depth"]) >= expected, 60
            ), f"{len(received['color'])} colour, {len(received['depth'])} depth; log: {log.read_text()}"

            # The camera_info of the last frame may come after its image (reliable, keep-last 1: a
            # sample the reader was not ready for is resent by Fast DDS's repair, under load later).
            def newest(key: str) -> int:
                return max((from_time(m.header.stamp) for _, m in received[key]), default=0)

            last = from_time(received["color"][-1][1].header.stamp)
            assert spin_until(node, lambda: newest("color_info") == newest("depth_info") == last, 10)
            spin_until(node, lambda: False, 0.3)  # nothing more may come
        finally:
            status = stop(process)
    assert status == 0

    colours = [msg for _, msg in received["color"]]
    assert len(colours) == FRAMES - WARMUP
    for index, msg in enumerate(colours, start=WARMUP):  # every frame once, in order
        assert (msg.encoding, msg.width, msg.height) == ("rgb8", WIDTH, HEIGHT)
        assert msg.header.frame_id == "side_color_optical_frame"
        np.testing.assert_array_equal(image_from_msg(msg), colour(index))
    stamps = np.array([from_time(msg.header.stamp) for msg in colours])
    recorded = np.array([round((FIRST_TIMESTAMP_MS + i * 1000 / 30) * 1e6) for i in range(WARMUP, FRAMES)])
    np.testing.assert_array_equal(stamps - stamps[0], recorded - recorded[0])  # the device's own intervals
    first_arrival = received["color"][0][0]
    assert 0 <= first_arrival - stamps[0] < 200_000_000  # ROS time of the first frame: its arrival

    depths = [msg for _, msg in received["depth"]]
    assert len(depths) == FRAMES - WARMUP
    for index, msg in enumerate(depths, start=WARMUP):
        assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == (
            "16UC1", WIDTH, HEIGHT, "side_color_optical_frame"
        )  # fmt: skip
        values = image_from_msg(msg, ["16UC1"])
        assert (values > 0).mean() > 0.8 and np.all(values[values > 0] == 1000 + index)
    np.testing.assert_array_equal([from_time(m.header.stamp) for m in depths], stamps)

    for key in ("color_info", "depth_info"):
        infos = [msg for _, msg in received[key]]
        # One per image, latched with depth 1: those sent before the probe's camera_info subscription
        # matched are replaced, and the latched one replayed to it may arrive after newer ones.
        assert infos and {from_time(i.header.stamp) for i in infos} <= set(stamps.tolist())
        info = max(infos, key=lambda i: from_time(i.header.stamp))
        assert (info.width, info.height, info.distortion_model) == (WIDTH, HEIGHT, "plumb_bob")
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), INFO.camera_matrix)
        np.testing.assert_allclose(info.d, INFO.dist_coeffs)
        assert (
            from_time(info.header.stamp) == stamps[-1] and info.header.frame_id == "side_color_optical_frame"
        )
    assert any(f"played to the end after {FRAMES - WARMUP} frames" in line for line in log_lines(log, "INFO"))
    assert not log_lines(log, "ERROR") and not log_lines(log, "WARN")


def test_missing_devices_log_one_line_and_retry(tmp_path: Path) -> None:
    retry = {"retry_initial_s": 0.1, "retry_max_s": 0.2}
    nodes = {
        "realsense": ({"type": "realsense", "realsense": {"serial_number": "000111"}},
                      "no RealSense with serial 000111"),
        "opencv": ({"type": "opencv", "opencv": {"source": "/dev/video97"}},
                   "OpenCV source /dev/video97 does not exist"),
    }  # fmt: skip
    processes = {}
    for name, (values, _) in nodes.items():
        params = write_params(tmp_path / f"{name}.yaml", "camera", {**values, **retry})
        processes[name] = start("aps-camera", params, tmp_path / f"{name}.log")
    time.sleep(3.0)  # about 15 retries each
    running = {name: process.poll() is None for name, process in processes.items()}
    statuses = {name: stop(process) for name, process in processes.items()}
    for name, (_, message) in nodes.items():
        log = tmp_path / f"{name}.log"
        assert running[name], f"{name} crashed: {log.read_text()}"  # retrying, not crashed
        errors = log_lines(log, "ERROR")
        assert len(errors) == 1 and message in errors[0] and "aps-find-cameras" in errors[0], log.read_text()
        assert statuses[name] == 0


def test_calibration_for_another_resolution_stops_the_node(
    recording: tuple[Path, Path], tmp_path: Path
) -> None:
    path, _ = recording
    write_camera_info(CameraInfo("small", (64, 48), INFO.camera_matrix, np.zeros(5)), tmp_path / "small.yaml")
    params = write_params(tmp_path / "camera.yaml", "camera", {
        "type": "recording", "recording": {"path": str(path)},
        "camera_info_path": str(tmp_path / "small.yaml"),
    })  # fmt: skip
    log = tmp_path / "camera.log"
    process = start("aps-camera", params, log)
    try:
        status = process.wait(timeout=30)
    finally:
        stop(process)
    errors = log_lines(log, "ERROR")
    assert status == 2 and len(errors) == 1 and "calibrate at this resolution" in errors[0], log.read_text()
