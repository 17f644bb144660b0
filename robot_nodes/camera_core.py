"""The camera node's core (no rclpy): device -> new frames with ROS stamps, frame ids and CameraInfo.

`CameraStream.next()` connects (retrying with backoff while the device is missing or lost), drops
the warm-up frames, refuses repeated frames, maps device time to ROS time and returns what the node
publishes, under realsense-ros's names:

    <camera>/color/image_raw                     rgb8
    <camera>/color/camera_info
    <camera>/aligned_depth_to_color/image_raw    16UC1, millimetres
    <camera>/aligned_depth_to_color/camera_info  (the colour intrinsics: depth is aligned to colour)

Device time -> ROS time: an offset fixed at the first frame (ROS now minus device time), as
realsense-ros does, so stamp differences are the device's own. The offset absorbs the first frame's
transport latency. The offset moves, with a warning, when a frame would be stamped more than
`max_clock_drift_s` after ROS now (from the future: the first frame came late), to stamp it just
after the previous frame, so stamps pull back toward ROS now by up to a frame period per frame and
never go backwards; and when DRIFT_FRAMES frames in a row (about a second) are stamped more than
that before ROS now (the device clock drifting over hours, ROS time jumping), to stamp it now. Frames
delayed by load move nothing: their stamps stay the device's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import numpy as np

from calibration.camera_info import CameraInfo, read_camera_info
from calibration.errors import CalibrationError
from robot_nodes.cameras import (
    Camera,
    CameraError,
    CameraSettingsError,
    DeviceConfig,
    EndOfRecording,
    Frame,
    OpenCVConfig,
    RealSenseConfig,
    RecordingConfig,
    make_camera,
)


@dataclass
class CameraNodeConfig:
    """`aps-camera` settings: one ROS parameter per leaf (e.g. `realsense.serial_number`)."""

    # The device is opened with these: changing one needs a restart, so they are read-only parameters.
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "camera_name", "type", "realsense", "recording", "opencv", "camera_info_path", "image_reliability",
        "image_queue",
    )  # fmt: skip

    camera_name: str = "camera"  # topic and frame prefix, as realsense-ros's camera_name
    type: Literal["realsense", "recording", "opencv"] = "realsense"  # which device section is used
    realsense: RealSenseConfig = field(default_factory=RealSenseConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    opencv: OpenCVConfig = field(default_factory=OpenCVConfig)
    # `aps-calibrate intrinsics` camera_info YAML of the colour stream; "" uses the device's own
    # calibration (a RealSense's factory intrinsics) and publishes no CameraInfo for other devices
    camera_info_path: str = ""
    # a stamp this far ahead of ROS now re-anchors device time, as do ~1 s of stamps this far behind
    max_clock_drift_s: float = 0.05
    retry_initial_s: float = 0.5  # first wait before reconnecting a missing or lost device
    retry_max_s: float = 10.0  # the wait doubles up to this
    # image QoS: reliable delivers images of any size to reliable and best-effort subscribers;
    # best_effort (sensor data) suits small images only (Fast DDS drops best-effort images over ~512 KB)
    image_reliability: Literal["reliable", "best_effort"] = "reliable"
    # keep-last depth of the image topics: how far (in frames) a slow reliable subscriber, e.g. a
    # recorder, may fall behind before it loses the oldest (10 = 1/3 s at 30 fps; ~1 MB per frame)
    image_queue: int = 10
    wait_for_subscriber_s: float = 0.0  # wait this long for a colour subscriber before opening the device

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.camera_name):
            raise ValueError(f"camera_name must be a ROS name (letters, digits, _), got {self.camera_name!r}")
        for name in ("max_clock_drift_s", "retry_initial_s", "retry_max_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        if self.image_queue < 1:
            raise ValueError(f"image_queue must be >= 1, got {self.image_queue}")
        if self.wait_for_subscriber_s < 0:
            raise ValueError(f"wait_for_subscriber_s must be >= 0, got {self.wait_for_subscriber_s}")

    @property
    def device(self) -> DeviceConfig:
        return getattr(self, self.type)

    @property
    def depth(self) -> bool:
        """Whether aligned depth is published (OpenCV devices have none)."""
        return getattr(self.device, "depth", False)

    @property
    def color_frame_id(self) -> str:
        return f"{self.camera_name}_color_optical_frame"


def topic_names(camera_name: str) -> dict[str, str]:
    """Relative topic names (realsense-ros's), so a namespace or a remap moves them."""
    return {
        "color": f"{camera_name}/color/image_raw",
        "color_info": f"{camera_name}/color/camera_info",
        "depth": f"{camera_name}/aligned_depth_to_color/image_raw",
        "depth_info": f"{camera_name}/aligned_depth_to_color/camera_info",
    }


class Log(Protocol):
    """What the core logs through: an rclpy logger or a `logging.Logger` both fit."""

    def info(self, message: str) -> object: ...

    def warning(self, message: str) -> object: ...

    def error(self, message: str) -> object: ...


DRIFT_FRAMES = 30  # frames in a row stamped too early before the offset is set again


class FrameClock:
    """Device time (ns) -> ROS time (ns): an offset fixed at the first frame, set again when a stamp
    is more than `max_drift_ns` ahead of ROS now, or DRIFT_FRAMES stamps in a row that far behind."""

    def __init__(self, max_drift_s: float) -> None:
        self.max_drift_ns = round(max_drift_s * 1e9)
        self.offset_ns: int | None = None
        self.off_frames = 0
        self.reanchors = 0
        self.last_stamp_ns = 0

    def reset(self) -> None:
        """A new device session: its clock starts anew."""
        self.offset_ns = None
        self.off_frames = 0

    def stamp(self, device_time_ns: int, now_ns: int) -> tuple[int, bool]:
        """The ROS stamp of a frame, and whether the offset had to be set again (drift)."""
        error = 0 if self.offset_ns is None else device_time_ns + self.offset_ns - now_ns
        self.off_frames = self.off_frames + 1 if error < -self.max_drift_ns else 0
        ahead, behind = error > self.max_drift_ns, self.off_frames >= DRIFT_FRAMES
        if self.offset_ns is None or behind:
            self.offset_ns = now_ns - device_time_ns
        elif ahead:
            self.offset_ns = max(now_ns, self.last_stamp_ns + 1) - device_time_ns
        if ahead or behind:
            self.off_frames = 0
            self.reanchors += 1
        self.last_stamp_ns = device_time_ns + self.offset_ns
        return self.last_stamp_ns, ahead or behind


class Backoff:
    """Retry delays that double from `initial_s` up to `max_s`, and reset on success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.delay_s = initial_s
        self.failures = 0

    def failed(self) -> float:
        """Record a failure; the wait before the next try."""
        delay = self.delay_s
        self.failures += 1
        self.delay_s = min(self.delay_s * 2, self.max_s)
        return delay

    def succeeded(self) -> None:
        self.delay_s, self.failures = self.initial_s, 0


@dataclass(frozen=True)
class StampedImage:
    data: np.ndarray
    stamp_ns: int
    number: int  # the device's frame number


@dataclass(frozen=True)
class Outgoing:
    """What the node publishes for one new colour frame."""

    color: StampedImage
    depth: StampedImage | None  # None when no depth stream, or its frame is not new


class CameraStream:
    """Connect with retries, read new frames, stamp them; the node publishes what `next()` returns.

    `clock_ns` is the node's ROS clock; `sleep` waits between retries (a stop event's wait in the
    node, so shutdown is prompt)."""

    def __init__(
        self,
        config: CameraNodeConfig,
        log: Log,
        clock_ns: Callable[[], int],
        sleep: Callable[[float], object] = time.sleep,
        camera: Camera | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.clock_ns = clock_ns
        self.sleep = sleep
        self.camera = camera or make_camera(config.device)
        self.clock = FrameClock(config.max_clock_drift_s)
        self.backoff = Backoff(config.retry_initial_s, config.retry_max_s)
        self.camera_info: CameraInfo | None = None
        self.ended = False  # a recording or video file played to its end
        self.published = 0
        self._last_error = ""
        self._last_depth_number: int | None = None

    def next(self) -> Outgoing | None:
        """The next new frame to publish, or None (not connected yet, or the recording ended).
        A CameraSettingsError (the config asks for what the device cannot do) propagates."""
        if self.ended:
            return None
        if not self.camera.is_connected and not self._connect():
            return None
        try:
            frame = self.camera.read()
        except EndOfRecording as err:
            self.log.info(f"{err} after {self.published} frames; publishing stops")
            self.ended = True
            self.camera.disconnect()
            return None
        except CameraError as err:
            self.camera.disconnect()
            self._failed(err)
            return None
        return self._stamp(frame)

    def close(self) -> None:
        if self.camera.is_connected:
            self.camera.disconnect()

    def _connect(self) -> bool:
        try:
            self.camera.connect()
            self.camera_info = self._load_camera_info()
        except CameraSettingsError:
            self.camera.disconnect()
            raise
        except EndOfRecording as err:  # a recording shorter than its warm-up
            self.log.error(f"{err} during warm-up: lower warmup_frames")
            self.ended = True
            return False
        except CameraError as err:
            self._failed(err)
            return False
        retries = self.backoff.failures
        self.backoff.succeeded()
        self.clock.reset()
        self._last_depth_number = None
        self._last_error = ""
        camera = self.camera
        self.log.info(
            f"{camera} connected: {camera.width}x{camera.height} at {camera.fps:g} fps"
            + (f" after {retries} retries" if retries else "")
            + ("" if self.camera_info else "; no intrinsics, so no CameraInfo (run aps-calibrate intrinsics)")
        )
        return True

    def _failed(self, error: CameraError) -> None:
        """One log line per outage (not one per retry), then wait before the next try."""
        delay = self.backoff.failed()
        if str(error) != self._last_error:
            self.log.error(f"{error}; retrying every {delay:g}-{self.config.retry_max_s:g} s")
            self._last_error = str(error)
        self.sleep(delay)

    def _load_camera_info(self) -> CameraInfo | None:
        camera = self.camera
        path = self.config.camera_info_path
        if not path:
            return camera.intrinsics()
        try:
            info = read_camera_info(Path(path))
        except CalibrationError as err:
            raise CameraSettingsError(
                f"{err}: set camera_info_path to an aps-calibrate intrinsics YAML"
            ) from err
        if tuple(info.image_size) != (camera.width, camera.height):
            raise CameraSettingsError(
                f"{path} is for {info.image_size[0]}x{info.image_size[1]} images but {camera} gives "
                f"{camera.width}x{camera.height}: calibrate at this resolution (aps-calibrate intrinsics)"
            )
        return info

    def _stamp(self, frame: Frame) -> Outgoing:
        now_ns = self.clock_ns()
        stamp, drifted = self.clock.stamp(frame.color.device_time_ns, now_ns)
        if drifted:
            self.log.warning(
                f"{self.camera}: device time drifted more than {self.config.max_clock_drift_s:g} s from "
                f"ROS time (now re-anchored {self.clock.reanchors} times)"
            )
        color = StampedImage(frame.color.data, stamp, frame.color.number)
        depth = None
        if frame.depth is not None and (
            self._last_depth_number is None or frame.depth.number > self._last_depth_number
        ):
            self._last_depth_number = frame.depth.number
            # Same device clock as colour: the same offset, without re-anchoring on its own.
            depth = StampedImage(
                frame.depth.data, frame.depth.device_time_ns + self.clock.offset_ns, frame.depth.number
            )
        self.published += 1
        return Outgoing(color, depth)
