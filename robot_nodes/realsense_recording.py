"""Write a RealSense recording from images, through pyrealsense2's own `software_device` + `rs.recorder`.

The file plays back through `RecordingConfig` (and `rs.config.enable_device_from_file`) exactly as a
recording of a real camera does, so a camera pipeline can be tested, or fed rendered sim images,
without hardware. pyrealsense2 2.59 records to rosbag2 sqlite (.db3).

    write_recording("side.db3", colors, depths, intrinsics, fps=30)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calibration.camera_info import CameraInfo
from robot_nodes.cameras import load_pyrealsense2

FIRST_TIMESTAMP_MS = 1000.0  # the first frame's device time


def write_recording(
    path: str | Path,
    colors: Sequence[np.ndarray],
    depths: Sequence[np.ndarray] | None,
    intrinsics: CameraInfo,
    fps: int = 30,
    depth_scale_m: float = 0.001,
    numbers: Sequence[int] | None = None,
) -> list[float]:
    """Record RGB uint8 [H, W, 3] colour frames (and uint16 depth in `depth_scale_m` units, already
    aligned: identity extrinsics, the same intrinsics) on the hardware clock. Frame i has number
    `numbers[i]` (default i) and device time FIRST_TIMESTAMP_MS + number / fps, so a repeated
    number records a device that sent one frame twice. Returns the device timestamps (ms)."""
    rs = load_pyrealsense2()
    height, width = colors[0].shape[:2]
    if tuple(intrinsics.image_size) != (width, height):
        raise ValueError(f"intrinsics are for {intrinsics.image_size}, images are {width}x{height}")
    if depths is not None and len(depths) != len(colors):
        raise ValueError(f"{len(colors)} colour frames but {len(depths)} depth frames")

    device = rs.software_device()
    streams = [("Color", rs.stream.color, rs.format.rgb8, 3, colors)]
    if depths is not None:
        streams.append(("Depth", rs.stream.depth, rs.format.z16, 2, depths))
    sensors, profiles = [], []
    for uid, (name, kind, fmt, bpp, _) in enumerate(streams):
        sensor = device.add_sensor(name)
        if kind == rs.stream.depth:
            sensor.add_read_only_option(rs.option.depth_units, depth_scale_m)
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid = kind, 0, uid
        stream.width, stream.height, stream.fps, stream.bpp, stream.fmt = width, height, fps, bpp, fmt
        stream.intrinsics = _rs_intrinsics(rs, intrinsics)
        sensors.append(sensor)
        profiles.append(sensor.add_video_stream(stream).as_video_stream_profile())
    if depths is not None:
        identity = rs.extrinsics()
        identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
        profiles[1].register_extrinsics_to(profiles[0], identity)

    recorder = rs.recorder(str(path), device)
    syncer = rs.syncer()
    for sensor, profile in zip(sensors, profiles, strict=True):
        sensor.open(profile)
        sensor.start(syncer)
    timestamps, keep_alive = [], []  # librealsense reads the pixels after on_video_frame returns
    for index, number in enumerate(range(len(colors)) if numbers is None else numbers):
        timestamp = FIRST_TIMESTAMP_MS + number * 1000.0 / fps
        for sensor, profile, (_, kind, _, bpp, images) in zip(sensors, profiles, streams, strict=True):
            pixels = np.ascontiguousarray(images[index], dtype=np.uint8 if bpp == 3 else np.uint16)
            if pixels.shape[:2] != (height, width):
                raise ValueError(f"frame {index} of {kind} is {pixels.shape}, expected {height}x{width}")
            keep_alive.append(pixels)
            frame = rs.software_video_frame()
            frame.pixels, frame.bpp, frame.stride = pixels, bpp, width * bpp
            frame.timestamp, frame.frame_number = timestamp, number
            frame.domain, frame.profile = rs.timestamp_domain.hardware_clock, profile
            sensor.on_video_frame(frame)
        timestamps.append(timestamp)
        time.sleep(0.002)  # the recorder writes from its own thread; let it keep up
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    del recorder  # closing the recorder finishes the file
    return timestamps


def _rs_intrinsics(rs: object, info: CameraInfo) -> object:
    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = (int(v) for v in info.image_size)
    k = info.camera_matrix
    intrinsics.fx, intrinsics.fy, intrinsics.ppx, intrinsics.ppy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    intrinsics.model = rs.distortion.brown_conrady
    intrinsics.coeffs = [float(c) for c in (list(info.dist_coeffs) + [0.0] * 5)[:5]]
    return intrinsics
