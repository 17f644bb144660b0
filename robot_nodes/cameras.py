"""Cameras in LeRobot's shape: one `Camera` interface, a typed config per device type, typed errors.

    with make_camera(RealSenseConfig(serial_number="123422071234", depth=True)) as camera:
        frame = camera.read()              # the next new frame (blocks up to the config's timeout)
        frame = camera.async_read(0.2)     # the newest frame not returned before, from a reader thread
        frame = camera.read_latest(0.1)    # the newest frame, with its timestamps, without waiting

Devices: a RealSense through pyrealsense2 (`RealSenseConfig`), playback of a RealSense recording
(`RecordingConfig`, the .db3 files that `rs.recorder` writes), and any OpenCV video source
(`OpenCVConfig`: a device index, a /dev/video path, or a video file). Settings are read back after
they are set, and a device that does not give what was asked is an error, not a surprise later.

Colour images are RGB uint8 [H, W, 3]; depth (aligned to colour) is uint16 millimetres [H, W], as
REP 118 has it. A frame whose number or device time does not move forward is never returned as new.
"""

from __future__ import annotations

import abc
import contextlib
import glob
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from calibration.camera_info import CameraInfo

FIND_CAMERAS = "aps-find-cameras"  # the console script that lists connected devices


# --- errors -------------------------------------------------------------------------------------


class CameraError(RuntimeError):
    """Anything a camera cannot do; the message says what to do about it."""


class CameraNotFoundError(CameraError):
    """The device (or recording) is not there: retried by the camera node."""


class CameraTimeoutError(CameraError):
    """No new frame in time: the device is lost or stalled; retried by the camera node."""


class CameraSettingsError(CameraError):
    """The device cannot give what the config asks for: a config error, not retried."""


class EndOfRecording(CameraError):
    """A recording (or a video file) has played to its end."""


# --- configs ------------------------------------------------------------------------------------


@dataclass
class RealSenseConfig:
    """A RealSense through pyrealsense2 (`type: realsense`)."""

    serial_number: str = ""  # "" takes the only connected RealSense; `aps-find-cameras` lists them
    width: int = 640  # colour resolution, read back after the stream starts
    height: int = 480
    fps: int = 30
    depth: bool = False  # also stream depth, aligned to the colour image
    depth_width: int = 640  # depth resolution before alignment (D4xx depth tops out at 1280x720)
    depth_height: int = 480
    warmup_frames: int = 30  # frames dropped after connecting, while auto-exposure settles (~1 s)
    timeout_s: float = 1.0  # no new frame for this long: the device is lost

    def __post_init__(self) -> None:
        _check_positive(self, "width", "height", "fps", "depth_width", "depth_height", "timeout_s")
        _check_non_negative(self, "warmup_frames")


@dataclass
class RecordingConfig:
    """Playback of a RealSense recording (`type: recording`): the .db3 file `rs.recorder` writes."""

    path: str = ""  # the recording; resolution and fps are the recorded ones
    depth: bool = False  # also play the recorded depth, aligned to colour
    real_time: bool = True  # pace frames at the recorded rate; false: as fast as they are read
    warmup_frames: int = 0  # frames dropped at the start
    timeout_s: float = 1.0  # no frame for this long: the playback is stuck

    def __post_init__(self) -> None:
        _check_positive(self, "timeout_s")
        _check_non_negative(self, "warmup_frames")


@dataclass
class OpenCVConfig:
    """Any OpenCV video source (`type: opencv`): a device index, a device path or a video file."""

    source: str = "0"  # "0" (index), "/dev/video2", or a video file
    width: int = 0  # 0 keeps the device's own; otherwise set, then read back and checked
    height: int = 0
    fps: float = 0.0
    fourcc: str = ""  # e.g. MJPG, which many USB cameras need for full resolution at 30 fps; "" = default
    warmup_frames: int = 10  # frames dropped after connecting, while exposure settles
    timeout_s: float = 1.0  # no new frame for this long: the device is lost

    def __post_init__(self) -> None:
        _check_non_negative(self, "width", "height", "fps", "warmup_frames")
        _check_positive(self, "timeout_s")
        if self.fourcc and len(self.fourcc) != 4:
            raise ValueError(f"fourcc must have 4 characters (e.g. MJPG), got {self.fourcc!r}")


DeviceConfig = RealSenseConfig | RecordingConfig | OpenCVConfig


def _check_positive(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(config, name)}")


def _check_non_negative(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")


# --- frames -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFrame:
    """One image of one stream, with the device's own counters."""

    data: np.ndarray
    number: int  # the device's frame counter
    device_time_ns: int  # the device's timestamp, on the clock its class names
    host_time_s: float  # time.monotonic() when the frame reached this process


@dataclass(frozen=True)
class Frame:
    color: StreamFrame  # RGB uint8 [H, W, 3]
    depth: StreamFrame | None = None  # uint16 millimetres [H, W], aligned to colour; None: no depth frame


# --- the interface ------------------------------------------------------------------------------


class Camera(abc.ABC):
    """connect / read / async_read / read_latest / disconnect, and a context manager.

    `read()` reads in the caller's thread. `async_read()` and `read_latest()` start a reader thread
    that keeps the newest frame; do not mix them with `read()` on one camera."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.width = 0  # read back from the device on connect
        self.height = 0
        self.fps = 0.0
        self._last: tuple[int, int] | None = None  # (number, device time) of the newest frame returned
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._latest: Frame | None = None
        self._reader_error: CameraError | None = None
        self._async_number: int | None = None
        self.stale_frames = 0  # frames dropped because their number or time did not move forward

    # --- what a device type implements ---------------------------------------------------------
    @staticmethod
    @abc.abstractmethod
    def find_cameras() -> list[dict[str, str]]:
        """The devices of this type that could be opened now."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    def _open(self) -> None:
        """Open the device, apply the settings, read them back into width / height / fps."""

    @abc.abstractmethod
    def _grab(self, deadline: float) -> Frame:
        """The device's next frame (possibly one it gave before), or a CameraError by `deadline`."""

    @abc.abstractmethod
    def _close(self) -> None: ...

    def intrinsics(self) -> CameraInfo | None:
        """The device's own calibration of the colour stream, if it has one (RealSense: factory)."""
        return None

    # --- the interface -------------------------------------------------------------------------
    def connect(self, warmup: bool = True) -> None:
        if self.is_connected:
            raise CameraError(f"{self}: already connected")
        self._last = None
        self._open()
        try:
            for _ in range(self.config.warmup_frames if warmup else 0):
                self._next_new_frame(self.config.timeout_s)
        except CameraError:
            self._close()
            raise

    def read(self, timeout_s: float | None = None) -> Frame:
        """The next frame newer than the last one returned (blocks up to `timeout_s`, default the
        config's timeout)."""
        self._require_connected()
        if self._reader is not None:
            raise CameraError(f"{self}: read() while the reader thread runs; use async_read()")
        return self._next_new_frame(self.config.timeout_s if timeout_s is None else timeout_s)

    def async_read(self, timeout_s: float | None = None) -> Frame:
        """The newest frame that async_read has not returned yet, waiting up to `timeout_s`."""
        self._start_reader()
        timeout_s = self.config.timeout_s if timeout_s is None else timeout_s
        with self._cond:
            fresh = self._cond.wait_for(
                lambda: (
                    self._reader_error is not None
                    or (self._latest is not None and self._latest.color.number != self._async_number)
                ),
                timeout_s,
            )
            if self._reader_error is not None:
                raise self._reader_error
            if not fresh or self._latest is None:
                raise CameraTimeoutError(f"{self}: no new frame within {timeout_s:g} s")
            self._async_number = self._latest.color.number
            return self._latest

    def read_latest(self, max_age_s: float | None = None) -> Frame:
        """The newest frame (returned again until a newer one arrives) without waiting; refuses one
        older than `max_age_s` (by arrival time)."""
        self._start_reader()
        with self._cond:
            if self._reader_error is not None:
                raise self._reader_error
            latest = self._latest
        if latest is None:
            raise CameraTimeoutError(f"{self}: no frame yet")
        age = time.monotonic() - latest.color.host_time_s
        if max_age_s is not None and age > max_age_s:
            raise CameraTimeoutError(f"{self}: the newest frame is {age:.3f} s old (max {max_age_s:g} s)")
        return latest

    def disconnect(self) -> None:
        if self._reader is not None:
            self._stop.set()
            self._reader.join(timeout=self.config.timeout_s + 1.0)
            self._reader = None
            self._stop.clear()
        self._latest = self._reader_error = self._async_number = None
        if self.is_connected:
            self._close()

    def __enter__(self) -> Camera:
        self.connect()
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.disconnect()

    def __del__(self) -> None:
        if getattr(self, "_reader", None) is not None:
            self._stop.set()

    # --- shared machinery ----------------------------------------------------------------------
    def _require_connected(self) -> None:
        if not self.is_connected:
            raise CameraError(f"{self}: not connected; call connect() first")

    def _next_new_frame(self, timeout_s: float) -> Frame:
        """The device's next frame whose number and device time both move forward: a repeated or
        out-of-order frame is dropped, never returned as new."""
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self._grab(deadline)
            key = (frame.color.number, frame.color.device_time_ns)
            if self._last is None or (key[0] > self._last[0] and key[1] > self._last[1]):
                self._last = key
                return frame
            self.stale_frames += 1
            if time.monotonic() > deadline:
                raise CameraTimeoutError(
                    f"{self}: only repeated frames for {timeout_s:g} s: the device stalled"
                )

    def _start_reader(self) -> None:
        self._require_connected()
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_forever, name=f"{self}-reader", daemon=True)
            self._reader.start()

    def _read_forever(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._next_new_frame(self.config.timeout_s)
            except CameraError as err:
                with self._cond:
                    self._reader_error = err
                    self._cond.notify_all()
                return
            with self._cond:
                self._latest = frame
                self._cond.notify_all()


# --- RealSense: a live device or a recording ------------------------------------------------------


def load_pyrealsense2() -> Any:
    """pyrealsense2, imported on first use. It carries its own Fast DDS (librealsense's DDS devices):
    in a process that also runs ROS 2 nodes, initialise rclpy before this first import, or the
    process crashes at exit (the first copy of Fast DDS loaded wins; seen with the kilted wheels)."""
    try:
        import pyrealsense2
    except ImportError as err:  # the wheel is in the `ros` extra; it needs libusb-1.0-0
        raise CameraError(
            f"pyrealsense2 does not import ({err}): pip install -e '.[ros]' and apt-get install libusb-1.0-0"
        ) from err
    return pyrealsense2


class RealSenseCamera(Camera):
    """A RealSense, live (`RealSenseConfig`) or played back from a recording (`RecordingConfig`).

    Device time is the frame's timestamp in its own domain (hardware clock, or the host's clock for
    global/system time); the camera node maps it to ROS time."""

    def __init__(self, config: RealSenseConfig | RecordingConfig) -> None:
        super().__init__(config)
        self._pipeline: Any = None
        self._align: Any = None
        self._depth_to_mm = 1.0
        self._color_profile: Any = None
        self._pace: tuple[float, int] | None = None  # (monotonic, device ns) of the first played frame
        self._held: tuple[Any, Any, float] | None = None  # a colour frame waiting for its depth frame

    def __str__(self) -> str:
        if isinstance(self.config, RecordingConfig):
            return f"RealSense recording {self.config.path}"
        return f"RealSense {self.config.serial_number or '(any)'}"

    @staticmethod
    def find_cameras() -> list[dict[str, str]]:
        rs = load_pyrealsense2()
        found = []
        for device in rs.context().query_devices():
            info = {"type": "realsense"}
            for key, field in (("name", "name"), ("serial_number", "serial_number"),
                               ("firmware", "firmware_version"), ("usb", "usb_type_descriptor")):  # fmt: skip
                kind = getattr(rs.camera_info, field)
                if device.supports(kind):
                    info[key] = device.get_info(kind)
            found.append(info)
        return found

    @property
    def is_connected(self) -> bool:
        return self._pipeline is not None

    def _open(self) -> None:
        rs = load_pyrealsense2()
        config = rs.config()
        if isinstance(self.config, RecordingConfig):
            if not Path(self.config.path).is_file():
                raise CameraNotFoundError(f"RealSense recording not found: {self.config.path}")
            config.enable_device_from_file(self.config.path, repeat_playback=False)
        else:
            self._check_present(rs)
            if self.config.serial_number:
                config.enable_device(self.config.serial_number)
            config.enable_stream(
                rs.stream.color, self.config.width, self.config.height, rs.format.rgb8, self.config.fps
            )
            if self.config.depth:
                config.enable_stream(
                    rs.stream.depth,
                    self.config.depth_width,
                    self.config.depth_height,
                    rs.format.z16,
                    self.config.fps,
                )
        pipeline = rs.pipeline()
        try:
            if isinstance(self.config, RecordingConfig):
                # Not real-time, set before the start: real-time playback drops frames whenever the
                # reader is late, the first ones included; this camera paces frames itself (_grab).
                config.resolve(pipeline).get_device().as_playback().set_real_time(False)
            profile = pipeline.start(config)
        except RuntimeError as err:
            raise CameraSettingsError(
                f"{self}: cannot start the streams ({err}); choose a mode the device has "
                f"({FIND_CAMERAS} lists devices; rs-enumerate-devices lists modes)"
            ) from err
        try:
            self._configure(rs, profile)
        except CameraError:
            pipeline.stop()
            raise
        self._pipeline = pipeline

    def _check_present(self, rs: Any) -> None:
        serials = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
        wanted = self.config.serial_number
        if (wanted and wanted not in serials) or not serials:
            raise CameraNotFoundError(
                f"no RealSense {'with serial ' + wanted if wanted else 'connected'} (connected: "
                f"{', '.join(serials) or 'none'}): check the USB 3 cable and power, or set "
                f"realsense.serial_number to one that {FIND_CAMERAS} lists"
            )

    def _configure(self, rs: Any, profile: Any) -> None:
        streams = {s.stream_type(): s for s in profile.get_streams()}
        if rs.stream.color not in streams:
            raise CameraSettingsError(f"{self}: no colour stream (set type to the device that has one)")
        color = self._color_profile = streams[rs.stream.color].as_video_stream_profile()
        self.width, self.height, self.fps = color.width(), color.height(), float(color.fps())
        if color.format() != rs.format.rgb8:
            raise CameraSettingsError(
                f"{self}: colour is {color.format()}, need rgb8 (record colour as rgb8)"
            )
        if isinstance(self.config, RealSenseConfig):
            asked = (self.config.width, self.config.height, float(self.config.fps))
            if asked != (self.width, self.height, self.fps):
                raise CameraSettingsError(
                    f"{self}: asked for {asked[0]}x{asked[1]} at {asked[2]:g} fps, the device gives "
                    f"{self.width}x{self.height} at {self.fps:g}: choose a mode it has"
                )
        else:
            self._pace = None
        self._align = None
        if self.config.depth:
            if rs.stream.depth not in streams:
                raise CameraSettingsError(f"{self}: no depth stream; set depth: false")
            scale = profile.get_device().first_depth_sensor().get_depth_scale()
            self._depth_to_mm = scale * 1000.0
            self._align = rs.align(rs.stream.color)

    def intrinsics(self) -> CameraInfo | None:
        if self._color_profile is None:
            return None
        rs = load_pyrealsense2()
        intr = self._color_profile.get_intrinsics()
        camera_matrix = np.array([[intr.fx, 0, intr.ppx], [0, intr.fy, intr.ppy], [0, 0, 1]])
        # Brown-Conrady is plumb_bob; RealSense colour streams have it (or no distortion at all).
        coeffs = np.array(intr.coeffs[:5], float) if intr.model != rs.distortion.none else np.zeros(5)
        projection = np.hstack([camera_matrix, np.zeros((3, 1))])
        return CameraInfo(str(self), (intr.width, intr.height), camera_matrix, coeffs, "plumb_bob",
                          np.eye(3), projection)  # fmt: skip

    def _grab(self, deadline: float) -> Frame:
        while True:
            held = self._held
            limit = deadline if held is None else min(deadline, held[2] + 1.0 / self.fps)
            ok, frames = self._pipeline.try_wait_for_frames(max(1, int((limit - time.monotonic()) * 1000)))
            if not ok:
                if held is not None:  # its depth frame never came (dropped): colour alone
                    self._held = None
                    return self._frame(held[0], None, held[2])
                if isinstance(self.config, RecordingConfig):
                    raise EndOfRecording(f"{self}: played to the end")
                raise CameraTimeoutError(
                    f"{self}: no frame for {self.config.timeout_s:g} s: the device is lost (check the "
                    "USB 3 cable, power, and that no other process holds the camera)"
                )
            color = frames.get_color_frame()
            if not color:  # sets with depth only, e.g. at the start of a stream
                if time.monotonic() > deadline:
                    raise CameraTimeoutError(f"{self}: no colour frames for {self.config.timeout_s:g} s")
                continue
            arrived = time.monotonic()
            if self._align is None:
                return self._frame(color, None, arrived)
            # The syncer sends a set as soon as either stream has a new frame, so a new colour frame
            # may come first with the previous depth; hold it (up to a frame period) for its own.
            depth = frames.get_depth_frame()
            if depth and abs(depth.get_timestamp() - color.get_timestamp()) <= 500.0 / self.fps:
                self._held = None
                return self._frame(color, frames, arrived)
            if held is not None and held[0].get_frame_number() != color.get_frame_number():
                self._held = (color, frames, arrived)
                return self._frame(held[0], None, held[2])
            if held is None:
                self._held = (color, frames, arrived)

    def _frame(self, color: Any, frames: Any, arrived: float) -> Frame:
        """A Frame of a colour frame and, when `frames` is given, its depth aligned to it."""
        color_frame = self._stream_frame(color, np.array(color.get_data(), copy=True), arrived)
        depth_frame = None
        if frames is not None:
            depth = self._align.process(frames).get_depth_frame()
            raw = np.asanyarray(depth.get_data())
            data = raw.copy() if self._depth_to_mm == 1.0 else self._to_mm(raw)
            depth_frame = self._stream_frame(depth, data, arrived)
        if isinstance(self.config, RecordingConfig) and self.config.real_time:
            self._wait_for_recorded_time(color_frame.device_time_ns)
        return Frame(color_frame, depth_frame)

    def _to_mm(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(raw * self._depth_to_mm), 0, 65535).astype(np.uint16)

    @staticmethod
    def _stream_frame(frame: Any, data: np.ndarray, arrived: float) -> StreamFrame:
        return StreamFrame(data, int(frame.get_frame_number()), round(frame.get_timestamp() * 1e6), arrived)

    def _wait_for_recorded_time(self, device_time_ns: int) -> None:
        """Sleep until the frame's recorded time after the first frame, like a live device."""
        if self._pace is None:
            self._pace = (time.monotonic(), device_time_ns)
        due = self._pace[0] + (device_time_ns - self._pace[1]) * 1e-9
        time.sleep(max(0.0, due - time.monotonic()))

    def _close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped by a lost device
            self._pipeline.stop()
        self._pipeline = self._align = self._color_profile = self._held = None


# --- OpenCV ---------------------------------------------------------------------------------------


class OpenCVCamera(Camera):
    """Any OpenCV `VideoCapture` source. Device time is the capture's own position (V4L2 buffer
    time, or the position in a video file) when it gives one, else the host's monotonic clock."""

    def __init__(self, config: OpenCVConfig) -> None:
        super().__init__(config)
        self._capture: cv2.VideoCapture | None = None
        self._count = 0
        self._is_file = False

    def __str__(self) -> str:
        return f"OpenCV camera {self.config.source}"

    @staticmethod
    def find_cameras() -> list[dict[str, str]]:
        return [{"type": "opencv", "source": path} for path in sorted(glob.glob("/dev/video*"))]

    @property
    def is_connected(self) -> bool:
        return self._capture is not None

    def _open(self) -> None:
        source = self.config.source
        index = int(source) if source.isdigit() else None
        path = Path(f"/dev/video{index}") if index is not None else Path(source)
        if not path.exists():
            devices = [d["source"] for d in self.find_cameras()]
            raise CameraNotFoundError(
                f"OpenCV source {source} does not exist ({path} is missing; video devices here: "
                f"{', '.join(devices) or 'none'}): plug the camera in or set opencv.source to one that "
                f"{FIND_CAMERAS} lists"
            )
        self._is_file = path.is_file()
        capture = cv2.VideoCapture(index if index is not None else source)
        if not capture.isOpened():
            raise CameraNotFoundError(f"{self}: OpenCV cannot open it (busy, or not a video source)")
        config = self.config
        if config.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*config.fourcc))
        settings = ((cv2.CAP_PROP_FRAME_WIDTH, config.width), (cv2.CAP_PROP_FRAME_HEIGHT, config.height),
                    (cv2.CAP_PROP_FPS, config.fps))  # fmt: skip
        for prop, value in settings:
            if value:
                capture.set(prop, value)
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(capture.get(cv2.CAP_PROP_FPS))
        asked = {"width": (config.width, self.width), "height": (config.height, self.height),
                 "fps": (config.fps, self.fps)}  # fmt: skip
        wrong = {k: v for k, v in asked.items() if v[0] and abs(v[0] - v[1]) > 1e-3}
        if wrong:
            capture.release()
            got = ", ".join(f"{k} {v[1]:g} for {v[0]:g}" for k, v in wrong.items())
            raise CameraSettingsError(
                f"{self}: the device gives {got}: choose a mode it has (v4l2-ctl --list-formats-ext)"
            )
        self._capture = capture
        self._count = 0

    def _grab(self, deadline: float) -> Frame:
        ok, bgr = self._capture.read()
        arrived = time.monotonic()
        if not ok:
            if self._is_file:
                raise EndOfRecording(f"{self}: played to the end")
            raise CameraTimeoutError(f"{self}: no frame (unplugged, or held by another process?)")
        position_ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)
        device_ns = round(position_ms * 1e6) if (position_ms > 0 or self._is_file) else round(arrived * 1e9)
        number = self._count
        self._count += 1
        return Frame(StreamFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), number, device_ns, arrived))

    def _close(self) -> None:
        self._capture.release()
        self._capture = None


def make_camera(config: DeviceConfig) -> Camera:
    if isinstance(config, OpenCVConfig):
        return OpenCVCamera(config)
    return RealSenseCamera(config)


def find_cameras() -> list[dict[str, str]]:
    """Every RealSense and OpenCV video device that could be opened now."""
    found = OpenCVCamera.find_cameras()
    with contextlib.suppress(CameraError):  # no pyrealsense2: OpenCV devices only
        found = RealSenseCamera.find_cameras() + found
    return found
