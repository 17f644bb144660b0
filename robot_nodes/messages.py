"""Messages <-> numpy, with checks (no rclpy: importable and testable without a ROS graph).

Stamps are integer nanoseconds of ROS time. Conventions of the stack's own topics:

- Images: `sensor_msgs/Image`, rgb8 for colour (bgr8 and mono8 read too), 16UC1 for depth (mm).
- Labelled vectors (privileged state, onboard vectors, policy actions): `std_msgs/Float32MultiArray`
  holding several named float32 vectors, one after the other. Its layout has one dimension per
  vector (label = the name, size = stride = its length). The message has no header, so the stamp
  rides in a leading dimension labelled ``stamp`` whose size and stride hold the seconds and
  nanoseconds (as builtin_interfaces/Time does): a labelled vector synchronises like an Image.
- The sim robot's `privileged_state` also carries its `reward` and `success` for the step
  (`outcome_vectors`): the task's privileged keys never use those names.
- Joint states: `sensor_msgs/JointState`, read back in the order of the names the reader asks for.
- Episode events: `std_msgs/String` holding `EpisodeEvent` as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float32MultiArray, Header, MultiArrayDimension, String

from calibration.camera_info import CameraInfo as CalibratedCamera

STAMP_LABEL = "stamp"
OUTCOME_KEYS = ("reward", "success")  # the sim's outcome beside its privileged state (never a task's key)
NS = 1_000_000_000
CLOCKS_APART_S = 3600.0  # a stamp this far behind the clock comes from another clock (sim vs wall time)

# encoding -> (channels, dtype) of the encodings this stack reads and writes
IMAGE_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "16UC1": (1, np.dtype(np.uint16)),
}


class MessageError(ValueError):
    """A message that cannot be turned into the arrays a core expects; the text says why."""


# --- stamps -----------------------------------------------------------------------------------


def to_time(stamp_ns: int) -> Time:
    if stamp_ns < 0:
        raise MessageError(f"stamp {stamp_ns} ns is negative")
    return Time(sec=int(stamp_ns // NS), nanosec=int(stamp_ns % NS))


def from_time(stamp: Time) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def header(stamp_ns: int, frame_id: str = "") -> Header:
    return Header(stamp=to_time(stamp_ns), frame_id=frame_id)


def stale_reason(what: str, stamp_ns: int, now_ns: int, limit_s: float) -> str | None:
    """Why data stamped `stamp_ns` is too old at `now_ns` (ROS time), or None when it is fresh. A
    stamp hours away from the clock means two clocks, not a slow graph: the text names the fix."""
    age = (now_ns - stamp_ns) / NS
    if age <= limit_s:
        return None
    reason = f"stale {what}: {age * 1e3:.0f} ms old (limit {limit_s * 1e3:.0f} ms)"
    if age > CLOCKS_APART_S:
        reason += "; its stamp is from another clock (a lockstep sim graph needs use_sim_time:=true)"
    return reason


# --- images -----------------------------------------------------------------------------------


def image_to_msg(image: np.ndarray, stamp_ns: int, frame_id: str = "", encoding: str = "rgb8") -> Image:
    """An HxWx3 uint8 (rgb8/bgr8), HxW uint8 (mono8) or HxW uint16 (16UC1, depth in mm) array."""
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(f"cannot write encoding {encoding!r}; use one of {sorted(IMAGE_ENCODINGS)}")
    channels, dtype = IMAGE_ENCODINGS[encoding]
    array = np.asarray(image)
    expected_ndim = 3 if channels == 3 else 2
    if array.dtype != dtype or array.ndim != expected_ndim or (channels == 3 and array.shape[2] != 3):
        shape = "HxWx3" if channels == 3 else "HxW"
        raise MessageError(f"{encoding} needs a {shape} {dtype} array, got {array.shape} {array.dtype}")
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return Image(
        header=header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(array.dtype.byteorder == ">"),
        step=width * channels * dtype.itemsize,
        data=array.tobytes(),
    )


def image_from_msg(msg: Image, expect: Sequence[str] = ("rgb8", "bgr8")) -> np.ndarray:
    """The image as a numpy array: colour as HxWx3 uint8 RGB (bgr8 is converted), mono8 as HxW
    uint8, 16UC1 as HxW uint16. An encoding outside `expect`, or a size that does not match the
    data, is a MessageError that names the encoding to publish."""
    if msg.encoding not in expect or msg.encoding not in IMAGE_ENCODINGS:
        raise MessageError(
            f"image encoding {msg.encoding!r} is not accepted here; publish one of {list(expect)}"
        )
    channels, dtype = IMAGE_ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes or len(msg.data) != msg.step * msg.height:
        raise MessageError(
            f"{msg.encoding} image {msg.width}x{msg.height}: step {msg.step} and {len(msg.data)} data "
            f"bytes do not fit (need step >= {row_bytes} and step x height bytes)"
        )
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    array = raw.copy().view(dtype.newbyteorder(order)).astype(dtype, copy=False)  # writable, owned
    array = array.reshape(msg.height, msg.width, channels)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(array[..., ::-1])
    return array if channels == 3 else array[..., 0]


# --- camera info ------------------------------------------------------------------------------


def camera_info_to_msg(info: CalibratedCamera, stamp_ns: int, frame_id: str) -> CameraInfo:
    """sensor_msgs/CameraInfo from a calibration (`calibration.read_camera_info` of aps-calibrate's
    YAML, or `pinhole_camera`)."""
    width, height = info.image_size
    return CameraInfo(
        header=header(stamp_ns, frame_id),
        width=int(width),
        height=int(height),
        distortion_model=info.distortion_model,
        d=[float(v) for v in info.dist_coeffs],
        k=[float(v) for v in np.asarray(info.camera_matrix).flat],
        r=[float(v) for v in np.asarray(info.rectification_matrix).flat],
        p=[float(v) for v in np.asarray(info.projection_matrix).flat],
    )


def pinhole_camera(name: str, fovy_deg: float, width: int, height: int) -> CalibratedCamera:
    """An ideal camera (no distortion) with MuJoCo's convention: `fovy` spans the image height."""
    focal = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
    matrix = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return CalibratedCamera(
        camera_name=name,
        image_size=(width, height),
        camera_matrix=matrix,
        dist_coeffs=np.zeros(5),
        projection_matrix=np.hstack([matrix, np.zeros((3, 1))]),
    )


# --- labelled vectors -------------------------------------------------------------------------


def labelled_layout(
    vectors: Mapping[str, np.ndarray], stamp_ns: int | None = None
) -> tuple[list[tuple[str, int, int]], np.ndarray]:
    """The labelled-vector convention for any message library: (label, size, stride) of each
    dimension (the stamp's first when given) and the concatenated float32 data."""
    dims = []
    if stamp_ns is not None:
        time = to_time(stamp_ns)
        dims.append((STAMP_LABEL, time.sec, time.nanosec))
    chunks = []
    for name, value in vectors.items():
        if name == STAMP_LABEL or not name:
            raise MessageError(f"{name!r} cannot name a vector (reserved or empty)")
        flat = np.asarray(value, dtype=np.float32).reshape(-1)
        dims.append((name, flat.size, flat.size))
        chunks.append(flat)
    return dims, np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def vectors_to_msg(vectors: Mapping[str, np.ndarray], stamp_ns: int | None = None) -> Float32MultiArray:
    """Named float32 vectors (each flattened) in one message, optionally stamped."""
    dims, data = labelled_layout(vectors, stamp_ns)
    msg = Float32MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label=label, size=size, stride=stride) for label, size, stride in dims
    ]
    msg.layout.data_offset = 0
    msg.data = data
    return msg


def vectors_from_msg(msg: Float32MultiArray) -> tuple[int | None, dict[str, np.ndarray]]:
    """(stamp in ns or None, name -> float32 vector) of a message written by `vectors_to_msg`."""
    data = np.asarray(msg.data, dtype=np.float32)
    stamp, vectors, offset = None, {}, int(msg.layout.data_offset)
    for index, dim in enumerate(msg.layout.dim):
        if dim.label == STAMP_LABEL and index == 0:
            stamp = int(dim.size) * NS + int(dim.stride)
            continue
        if not dim.label or dim.label in vectors:
            raise MessageError(f"labelled vector layout: dimension {index} has an empty or repeated label")
        vectors[dim.label] = data[offset : offset + dim.size].copy()
        offset += dim.size
    if offset != data.size:
        raise MessageError(
            f"labelled vector layout covers {offset} numbers, the message holds {data.size}; "
            "publish it with robot_nodes.messages.vectors_to_msg"
        )
    return stamp, vectors


def outcome_vectors(reward: float, success: bool) -> dict[str, np.ndarray]:
    """The sim's outcome of a step as labelled vectors (`OUTCOME_KEYS`), published beside the
    privileged state so a recorder can take the sim's own reward where the privileged keys cannot
    give it (robot_nodes.recorder_core, reward=stream)."""
    return {OUTCOME_KEYS[0]: np.array([reward], np.float32), OUTCOME_KEYS[1]: np.array([success], np.float32)}


# --- joint states -----------------------------------------------------------------------------


def joint_state_to_msg(
    names: Sequence[str],
    position: np.ndarray,
    stamp_ns: int,
    velocity: np.ndarray | None = None,
    effort: np.ndarray | None = None,
) -> JointState:
    msg = JointState(header=header(stamp_ns), name=list(names))
    for field, values in (("position", position), ("velocity", velocity), ("effort", effort)):
        if values is None:
            continue
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size != len(names):
            raise MessageError(f"joint {field}: {values.size} values for {len(names)} joints")
        setattr(msg, field, values.tolist())
    return msg


def joint_state_arrays(msg: JointState, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions (and velocities, when the message has them) of `names`, in that order."""
    index = {name: i for i, name in enumerate(msg.name)}
    missing = [name for name in names if name not in index]
    if missing:
        raise MessageError(f"joint_states lacks joints {missing} (it has {list(msg.name)})")
    order = [index[name] for name in names]
    position = np.asarray(msg.position, dtype=np.float64)
    if position.size != len(msg.name):
        raise MessageError(f"joint_states has {len(msg.name)} names but {position.size} positions")
    velocity = np.asarray(msg.velocity, dtype=np.float64)
    return position[order], velocity[order] if velocity.size == len(msg.name) else None


# --- episode events -----------------------------------------------------------------------------


@dataclass
class EpisodeEvent:
    """An episode's start or end, as `std_msgs/String` JSON on `episode_events` (no custom
    interfaces can be built from the PyPI wheels; JSON keeps the fields named and extensible).

    `stamp_ns` is the stamp of the episode's first observation (start) or last one (end): frames
    stamped at or after a start belong to that episode. Events and frames travel on different
    topics, so a reader may get the next episode's first frames before its start event (or before
    the end event of this one). `until_ns` lets it tell them apart by stamp alone: no frame of this
    episode is stamped after it, and the next episode's frames all are (the lockstep sim gives each
    episode a stamp range of its step limit). 0: open-ended; then only the order of arrival tells."""

    kind: Literal["start", "end"]
    episode: int  # counts from 0 in one run of the publisher
    seed: int
    stamp_ns: int
    task: str = ""
    steps: int = 0  # control steps taken (end)
    success: bool = False  # (end)
    truncated: bool = False  # ended by the step limit rather than by the task (end)
    until_ns: int = 0  # the last stamp that can belong to this episode; 0: open-ended

    def to_msg(self) -> String:
        return String(data=json.dumps(asdict(self)))

    @staticmethod
    def from_msg(msg: String) -> EpisodeEvent:
        try:
            fields = json.loads(msg.data)
            event = EpisodeEvent(**fields)
        except (json.JSONDecodeError, TypeError) as err:
            raise MessageError(f"episode event is not the stack's JSON ({err}): {msg.data[:80]!r}") from err
        if event.kind not in ("start", "end"):
            raise MessageError(f"episode event kind {event.kind!r} is not start or end")
        return event
