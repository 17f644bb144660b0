"""rosbag2 recordings in and MCAP out, through `rosbags` (pure Python: no ROS install, no rclpy).

    import_bag("runs/bag_0", "data/demos", load_config(BagImportConfig, None, ["recorder.dataset=..."]))
    export_mcap(EpisodeFile("data/demos/episode_000003.h5"), "ep3.mcap")

`import_bag` replays a bag (sqlite3 or MCAP, a rosbag2 folder or a bare .mcap file) through the
episode recorder's own core (`RecorderCore`), so a `ros2 bag record` of the robot's topics gives
the same episodes as the recorder node would have written: the same synchronisation, tolerance
counts, rewards and episode boundaries (from `episode_events`, or the whole bag as one episode).
Messages are decoded by rosbags and converted by the stack's own functions (robot_nodes.messages),
which read any object with the ROS message's fields.

`export_mcap` writes an episode with the topics and conventions of the sim robot and the policy
(`<camera>/color/image_raw`, `joint_states`, `onboard_vectors`, `privileged_state` with the step's
`reward` and `success`, `action`, `episode_events`), stamped with the recorded times, so it opens
in Foxglove and imports back into the same episode.
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies.dataset_tools import DatasetError
from policies.episodes import EpisodeFile
from robot_nodes.messages import (
    NS,
    EpisodeEvent,
    MessageError,
    from_time,
    image_from_msg,
    joint_state_arrays,
    labelled_layout,
    outcome_vectors,
    vectors_from_msg,
)
from robot_nodes.policy_core import JOINTS_KEY, JointsLayout
from robot_nodes.recorder_core import VERSION_KEY, EpisodeRecord, RecorderConfig, RecorderCore, RewardSource

IMAGE, JOINT_STATE = "sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"
VECTORS, STRING = "std_msgs/msg/Float32MultiArray", "std_msgs/msg/String"


@dataclass
class BagImportConfig(RecorderConfig):
    # label (the default here): 1 at the last step of a success; task: the task's function on
    # privileged data; stream: the sim's own reward beside its privileged state
    reward: RewardSource = "label"
    episode_events: str = (
        "episode_events"  # topic of the episode events; empty or not in the bag: one episode
    )
    success: bool = False  # the success label of a bag recorded without episode events
    joints: JointsLayout = field(default_factory=JointsLayout)  # how joint_states make the `joints` vector


def _topic(name: str) -> str:
    return name.strip("/")


def image_key(topic: str) -> str:
    """An image topic's key: its first name (realsense-ros's `<camera>/color/image_raw`)."""
    return _topic(topic).split("/")[0]


def typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def import_bag(bag: str | Path, config: BagImportConfig) -> list[EpisodeRecord]:
    """Every episode of a rosbag2 recording, written into `config.dataset`; what became of each."""
    from rosbags.highlevel import AnyReader

    bag = Path(bag)
    if not bag.exists():
        raise DatasetError(f"{bag}: no such bag (a rosbag2 folder or an .mcap file)")
    core = RecorderCore(config)
    wanted = {_topic(name) for name in core.streams}
    try:
        reader = AnyReader([bag], default_typestore=typestore())
        reader.open()
    except Exception as err:  # rosbags raises its own errors for every way a bag can be unreadable
        raise DatasetError(f"{bag}: not a readable rosbag2 recording ({err})") from err
    try:
        available = {_topic(c.topic): c.msgtype for c in reader.connections}
        missing = sorted(wanted - set(available))
        if missing:
            raise DatasetError(
                f"{bag} lacks topic(s) {missing} (it has {sorted(available)}): record them, or name the "
                "bag's topics with step_stream=, onboard_streams=[...], privileged_streams=[...]"
            )
        events = _topic(config.episode_events) if _topic(config.episode_events) in available else ""
        connections = [c for c in reader.connections if _topic(c.topic) in wanted | {events}]
        last_step, started = None, False
        for connection, log_ns, raw in reader.messages(connections=connections):
            topic = _topic(connection.topic)
            message = deserialize(reader.typestore, raw, connection.msgtype)
            if topic == events:
                _on_event(core, EpisodeEvent.from_msg(message))
                continue
            stamp, arrays = _arrays(topic, connection.msgtype, message, log_ns, config.joints)
            if not events and not started:
                core.start(stamp, attrs={"source_bag": bag.name})
                started = True
            version = None
            if topic == _topic(config.step_stream):
                last_step = stamp
                if VERSION_KEY in arrays:  # a policy's actions say which weights computed them
                    version = int(arrays.pop(VERSION_KEY)[0])
            core.add(_stream_name(core, topic), stamp, arrays, version)
        if core.recording and not events and last_step is not None:
            core.end(last_step, success=config.success)
        if core.recording and core.episode is not None and core.episode.ending is not None:
            core.poll(2**62)  # the bag is over: close with the nearest frames
        if core.recording:
            core.device_lost("bag", "the bag ends inside the episode")
    except MessageError as err:
        core.close()
        raise DatasetError(f"{bag}: {err}") from err
    finally:
        reader.close()
    return core.drain_records()


def deserialize(store: Any, raw: bytes | memoryview, msgtype: str) -> Any:
    """A CDR message, trailing padding allowed: rclpy's serialize_message under Fast DDS (and bags
    recorded through it) can end a message with up to 8 bytes of alignment after empty float64
    sequences (a JointState without velocities); ROS's own deserializer ignores them, rosbags'
    deserialize_cdr refuses more than 3, so its generated reader is called directly here."""
    if len(raw) < 4 or bytes(raw[:2]) not in (b"\x00\x00", b"\x00\x01"):
        raise MessageError(f"{msgtype}: not a CDR-encoded message")
    msgdef = store.get_msgdef(msgtype)
    read = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
    try:
        message, _ = read(raw[4:], 0, msgdef.cls, store)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as err:
        raise MessageError(f"{msgtype}: cannot decode a message ({err})") from err
    return message


def _on_event(core: RecorderCore, event: EpisodeEvent) -> None:
    if event.kind == "start":
        if core.recording and core.episode is not None and core.episode.ending is None:
            core.device_lost("episode_events", "the next episode started without an end event")
        core.start(event.stamp_ns, event.seed, event.episode)
    elif core.recording and core.episode is not None and core.episode.index == event.episode:
        core.end(event.stamp_ns, event.success, event.truncated)


def _stream_name(core: RecorderCore, topic: str) -> str:
    return next(name for name in core.streams if _topic(name) == topic)


def _arrays(
    topic: str, msgtype: str, message: Any, log_ns: int, joints: JointsLayout
) -> tuple[int, dict[str, np.ndarray]]:
    """(stamp, named arrays) of one message, as the recorder node hands them to its core."""
    if msgtype == IMAGE:
        return from_time(message.header.stamp), {image_key(topic): image_from_msg(message)}
    if msgtype == JOINT_STATE:
        names = [*joints.arm, *joints.gripper]
        positions, _ = joint_state_arrays(message, names)
        return from_time(message.header.stamp), {
            JOINTS_KEY: joints.vector(dict(zip(names, positions, strict=True)))
        }
    if msgtype == VECTORS:
        stamp, vectors = vectors_from_msg(message)
        return (log_ns if stamp is None else stamp), vectors
    raise MessageError(f"{topic} carries {msgtype}; the recorder reads {IMAGE}, {JOINT_STATE} and {VECTORS}")


# --- export ----------------------------------------------------------------------------------------


def export_mcap(episode_file: EpisodeFile, out: str | Path, joints: JointsLayout | None = None) -> Path:
    """One episode as an MCAP file of ROS 2 messages (see the module's docstring)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    joints = joints or JointsLayout()
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out} exists: choose a new file name")
    episode = episode_file.load()
    store = typestore()
    base = int(episode.attrs.get("start_stamp_ns", 0))
    stamps = [base + round(float(t) * NS) for t in episode.timestamp]
    task = str(episode.attrs.get("task", ""))
    seed = int(episode.attrs.get("seed", -1))
    folder = out.with_name(f".{out.name}.rosbag2")
    shutil.rmtree(folder, ignore_errors=True)
    try:
        with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            topics: dict[str, Any] = {}

            def write(topic: str, msgtype: str, stamp: int, message: Any) -> None:
                if topic not in topics:
                    topics[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(topics[topic], stamp, store.serialize_cdr(message, msgtype))

            start = EpisodeEvent("start", 0, seed, stamps[0], task)
            write("/episode_events", STRING, stamps[0], _string(store, json.dumps(asdict(start))))
            for t, stamp in enumerate(stamps):
                observation = episode.observation(t)
                vectors = {}
                for key, value in observation["onboard"].items():
                    if value.dtype == np.uint8 and value.ndim == 3:
                        write(f"/{key}/color/image_raw", IMAGE, stamp, _image(store, value, stamp, key))
                    elif key == JOINTS_KEY and value.shape == (len(joints.arm) + bool(joints.gripper),):
                        write(
                            "/joint_states",
                            JOINT_STATE,
                            stamp,
                            _joint_state(store, joints.positions(value), stamp),
                        )
                    else:
                        vectors[key] = value
                if vectors:
                    write("/onboard_vectors", VECTORS, stamp, _vectors(store, vectors, stamp))
                last = t == len(episode)
                reward = float(episode.reward[t - 1]) if t else 0.0
                outcome = outcome_vectors(reward, last and episode.success)
                write(
                    "/privileged_state",
                    VECTORS,
                    stamp,
                    _vectors(store, observation["privileged"] | outcome, stamp),
                )
                if not last:
                    write("/action", VECTORS, stamp, _vectors(store, {"action": episode.action[t]}, stamp))
            end = EpisodeEvent(
                "end", 0, seed, stamps[-1], task, len(episode), episode.success, bool(episode.truncated[-1])
            )
            write("/episode_events", STRING, stamps[-1], _string(store, json.dumps(asdict(end))))
        shutil.move(folder / f"{folder.name}.mcap", out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _header(store: Any, stamp: int, frame_id: str = "") -> Any:
    types = store.types
    time = types["builtin_interfaces/msg/Time"](sec=stamp // NS, nanosec=stamp % NS)
    return types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def _image(store: Any, image: np.ndarray, stamp: int, camera: str) -> Any:
    height, width = image.shape[:2]
    return store.types[IMAGE](
        header=_header(store, stamp, f"{camera}_color_optical_frame"), height=height, width=width,
        encoding="rgb8", is_bigendian=0, step=width * 3, data=np.ascontiguousarray(image).reshape(-1),
    )  # fmt: skip


def _joint_state(store: Any, positions: dict[str, float], stamp: int) -> Any:
    empty = np.zeros(0, np.float64)
    values = np.array(list(positions.values()), np.float64)
    return store.types[JOINT_STATE](
        header=_header(store, stamp), name=list(positions), position=values, velocity=empty, effort=empty
    )


def _vectors(store: Any, vectors: dict[str, np.ndarray], stamp: int) -> Any:
    dims, data = labelled_layout(vectors, stamp)
    dimension = store.types["std_msgs/msg/MultiArrayDimension"]
    layout = store.types["std_msgs/msg/MultiArrayLayout"](
        dim=[dimension(label=label, size=size, stride=stride) for label, size, stride in dims], data_offset=0
    )
    return store.types[VECTORS](layout=layout, data=data)


def _string(store: Any, text: str) -> Any:
    return store.types[STRING](data=text)
