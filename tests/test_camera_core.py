"""The camera core on real devices without hardware: RealSense recordings written through
pyrealsense2's software_device and played back through rs.pipeline, OpenCV on a real video file,
and the real "no RealSense connected" path of this machine."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_node_helpers import load_ros_middleware_first

from calibration.camera_info import CameraInfo, write_camera_info
from robot_nodes.camera_core import (
    DRIFT_FRAMES,
    Backoff,
    CameraNodeConfig,
    CameraStream,
    FrameClock,
    topic_names,
)
from robot_nodes.cameras import (
    CameraError,
    CameraNotFoundError,
    CameraSettingsError,
    EndOfRecording,
    OpenCVCamera,
    OpenCVConfig,
    RealSenseCamera,
    RealSenseConfig,
    RecordingConfig,
    make_camera,
)
from robot_nodes.realsense_recording import FIRST_TIMESTAMP_MS, write_recording

WIDTH, HEIGHT, FRAMES = 32, 24, 8
INFO = CameraInfo(
    "rec", (WIDTH, HEIGHT), np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]), np.zeros(5)
)


def colour(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def depth(i: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH), 400 + 10 * i, np.uint16)


@pytest.fixture(scope="module", autouse=True)
def ros_middleware_before_pyrealsense2() -> None:
    load_ros_middleware_first()


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rs") / "rgbd.db3"
    write_recording(path, [colour(i) for i in range(FRAMES)], [depth(i) for i in range(FRAMES)], INFO, fps=30)
    return path


class ListLog:
    """Collects log lines as the node's logger would print them."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message))

    def error(self, message: str) -> None:
        self.lines.append(("error", message))

    def of(self, level: str) -> list[str]:
        return [m for lvl, m in self.lines if lvl == level]


def test_cores_import_no_rclpy() -> None:
    code = "import sys, robot_nodes.camera_core, robot_nodes.tracker_core; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_recording_plays_every_frame_with_aligned_depth_and_settings(recording: Path) -> None:
    config = RecordingConfig(path=str(recording), depth=True, real_time=False)
    with make_camera(config) as camera:
        assert (camera.width, camera.height, camera.fps) == (WIDTH, HEIGHT, 30.0)  # read back
        intrinsics = camera.intrinsics()
        np.testing.assert_allclose(intrinsics.camera_matrix, INFO.camera_matrix, atol=1e-4)
        for i in range(FRAMES):
            frame = camera.read()
            assert frame.color.number == i
            assert frame.color.device_time_ns == round((FIRST_TIMESTAMP_MS + i * 1000 / 30) * 1e6)
            np.testing.assert_array_equal(frame.color.data, colour(i))
            assert frame.depth is not None and frame.depth.number == i
            # rs.align re-projects every depth pixel: with identity extrinsics each lands on itself,
            # or leaves a hole (0) where rounding sends two to one pixel.
            valid = frame.depth.data > 0
            assert valid.mean() > 0.8
            np.testing.assert_array_equal(frame.depth.data[valid], depth(i)[valid])
        with pytest.raises(EndOfRecording, match="played to the end"):
            camera.read()
    assert not camera.is_connected


def test_real_time_playback_keeps_the_recorded_rate(recording: Path) -> None:
    with make_camera(RecordingConfig(path=str(recording))) as camera:
        arrivals = [camera.read().color.host_time_s for _ in range(FRAMES)]
    period = np.diff(arrivals).mean()
    assert 0.8 / 30 < period < 1.5 / 30, period


def test_async_read_and_read_latest(recording: Path) -> None:
    with make_camera(RecordingConfig(path=str(recording))) as camera:
        first = camera.async_read(timeout_s=1.0)
        second = camera.async_read(timeout_s=1.0)
        assert second.color.number > first.color.number  # never the same frame twice
        latest = camera.read_latest(max_age_s=1.0)
        assert latest.color.number >= second.color.number
        with pytest.raises(CameraError, match="reader thread"):
            camera.read()
        time.sleep(0.5)  # the recording (8 frames at 30 fps) has ended: the newest frame ages
        with pytest.raises(CameraError):
            camera.read_latest(max_age_s=0.1)


def test_repeated_device_frame_is_dropped_not_returned(tmp_path: Path) -> None:
    numbers = [0, 1, 2, 2, 3]  # the device sent frame 2 twice
    path = tmp_path / "stall.db3"
    write_recording(path, [colour(i) for i in range(len(numbers))], None, INFO, numbers=numbers)
    with make_camera(RecordingConfig(path=str(path), real_time=False)) as camera:
        frames = [camera.read() for _ in range(4)]
        assert [f.color.number for f in frames] == [0, 1, 2, 3]
        np.testing.assert_array_equal(frames[3].color.data, colour(4))
        assert camera.stale_frames == 1


def test_warm_up_drops_the_first_frames(recording: Path) -> None:
    with make_camera(RecordingConfig(path=str(recording), warmup_frames=3, real_time=False)) as camera:
        assert camera.read().color.number == 3


def test_stream_maps_device_time_to_ros_time(recording: Path) -> None:
    config = CameraNodeConfig(type="recording", recording=RecordingConfig(path=str(recording), depth=True))
    log = ListLog()
    stream = CameraStream(config, log, time.time_ns)
    outgoing = []
    while not stream.ended:
        start = time.time_ns()
        item = stream.next()
        if item is not None:
            outgoing.append((item, start, time.time_ns()))
    assert [o.color.number for o, _, _ in outgoing] == list(range(FRAMES))
    stamps = np.array([o.color.stamp_ns for o, _, _ in outgoing])
    device = np.array([round((FIRST_TIMESTAMP_MS + i * 1000 / 30) * 1e6) for i in range(FRAMES)])
    np.testing.assert_array_equal(stamps - stamps[0], device - device[0])  # the device's own intervals
    first, started, returned = outgoing[0]
    assert started - 50_000_000 <= first.color.stamp_ns <= returned  # anchored at its arrival
    assert all(o.depth is not None and o.depth.stamp_ns == o.color.stamp_ns for o, _, _ in outgoing)
    np.testing.assert_allclose(stream.camera_info.camera_matrix, INFO.camera_matrix, atol=1e-4)
    assert any("played to the end after 8 frames" in m for m in log.of("info"))
    assert stream.next() is None  # ended: nothing more, no reconnect


def test_frame_clock_offset_is_fixed_and_reanchors_on_lasting_drift() -> None:
    ms, period = 1_000_000, 33_000_000
    clock = FrameClock(max_drift_s=0.05)
    assert clock.stamp(1_000, 5_000 * ms) == (5_000 * ms, False)
    # Transport jitter, then a frame 200 ms late (a load spike): the offset stays.
    assert clock.stamp(period + 1_000, 5_053 * ms) == (5_033 * ms, False)
    assert clock.stamp(2 * period + 1_000, 5_266 * ms) == (5_066 * ms, False)
    assert clock.stamp(3 * period + 1_000, 5_100 * ms) == (5_099 * ms, False)  # on time again
    # From frame 4 on the device clock is 100 ms behind ROS time: re-anchored after DRIFT_FRAMES frames.
    for frame in range(4, 4 + DRIFT_FRAMES - 1):
        assert clock.stamp(frame * period + 1_000, 5_100 * ms + frame * period)[1] is False
    frame = 4 + DRIFT_FRAMES - 1
    stamp, drifted = clock.stamp(frame * period + 1_000, 5_100 * ms + frame * period)
    assert drifted and stamp == 5_100 * ms + frame * period and clock.reanchors == 1
    # Device time 60 ms ahead of ROS time (as when the anchor frame came late): the next stamp goes
    # just after the previous one instead of 60 ms ahead, never backwards; then the device's intervals.
    stamps = [stamp]
    for later in range(frame + 1, frame + 4):
        stamps.append(clock.stamp(later * period + 1_000, 5_040 * ms + later * period)[0])
    assert stamps[1] == stamps[0] + 1  # pulled back by a period: 27 ms ahead, within the bound
    assert stamps[2] == stamps[1] + period and stamps[3] == stamps[2] + period
    assert clock.reanchors == 2
    clock.reset()
    assert clock.stamp(0, 7) == (7, False)


def test_backoff_doubles_to_its_limit_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.succeeded()
    assert backoff.failed() == 0.5


def test_missing_realsense_is_one_log_line_and_retries_with_backoff() -> None:
    assert RealSenseCamera.find_cameras() == []  # this machine has no RealSense
    with pytest.raises(CameraNotFoundError, match=r"no RealSense with serial 123456 .*aps-find-cameras"):
        make_camera(RealSenseConfig(serial_number="123456")).connect()
    log, waits = ListLog(), []
    config = CameraNodeConfig(retry_initial_s=0.1, retry_max_s=0.4)
    stream = CameraStream(config, log, time.time_ns, sleep=waits.append)
    assert [stream.next() for _ in range(5)] == [None] * 5
    assert waits == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert len(log.of("error")) == 1 and "no RealSense connected" in log.of("error")[0]


def test_missing_recording_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CameraNotFoundError, match="recording not found"):
        make_camera(RecordingConfig(path=str(tmp_path / "none.db3"))).connect()


def test_opencv_device_that_does_not_exist_is_a_clear_error() -> None:
    with pytest.raises(CameraNotFoundError, match=r"/dev/video97 does not exist.*aps-find-cameras"):
        OpenCVCamera(OpenCVConfig(source="/dev/video97")).connect()
    with pytest.raises(CameraNotFoundError, match=r"/dev/video41 is missing"):
        OpenCVCamera(OpenCVConfig(source="41")).connect()


def test_opencv_reads_a_video_file_with_its_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 20.0, (WIDTH, HEIGHT))
    for i in range(5):
        writer.write(np.full((HEIGHT, WIDTH, 3), (40 * i, 0, 200), np.uint8))  # BGR
    writer.release()
    with OpenCVCamera(OpenCVConfig(source=str(path), warmup_frames=1)) as camera:
        assert (camera.width, camera.height, camera.fps) == (WIDTH, HEIGHT, 20.0)
        frames = [camera.read() for _ in range(4)]
        with pytest.raises(EndOfRecording):
            camera.read()
    assert [f.color.number for f in frames] == [1, 2, 3, 4]  # frame 0 was the warm-up
    times = np.diff([f.color.device_time_ns for f in frames])
    np.testing.assert_allclose(times, 50_000_000, atol=1_000_000)  # the file's 20 fps
    assert abs(int(frames[0].color.data[5, 5, 0]) - 200) < 8  # RGB: red from BGR's last channel
    with pytest.raises(CameraSettingsError, match="width 32 for 64"):
        OpenCVCamera(OpenCVConfig(source=str(path), width=64)).connect()


def test_camera_info_of_another_resolution_is_a_settings_error(recording: Path, tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    write_camera_info(CameraInfo("other", (64, 48), INFO.camera_matrix, np.zeros(5)), path)
    config = CameraNodeConfig(
        type="recording", recording=RecordingConfig(path=str(recording)), camera_info_path=str(path)
    )
    stream = CameraStream(config, ListLog(), time.time_ns)
    with pytest.raises(CameraSettingsError, match=r"64x48 images but .* gives 32x24: calibrate"):
        stream.next()
    assert not stream.camera.is_connected


def test_config_checks_and_topic_names() -> None:
    with pytest.raises(ValueError, match="camera_name"):
        CameraNodeConfig(camera_name="side camera")
    with pytest.raises(ValueError, match="fourcc"):
        OpenCVConfig(fourcc="MJPEG")
    assert topic_names("side")["depth"] == "side/aligned_depth_to_color/image_raw"
    assert CameraNodeConfig(camera_name="side").color_frame_id == "side_color_optical_frame"


def test_log_is_compatible_with_python_logging(recording: Path) -> None:
    stream = CameraStream(
        CameraNodeConfig(type="recording", recording=RecordingConfig(path=str(recording), real_time=False)),
        logging.getLogger("aps.camera"),
        time.time_ns,
    )
    assert stream.next() is not None
    stream.close()
