"""What the recorder node adds to the recorder core: its settings, and messages turned into the core's
named arrays. No rclpy (message types only), so it is tested in-process.

A stream is a topic; its message type follows from its name, as the stack's nodes publish them:

- `<camera>/color/image_raw` (realsense-ros names): sensor_msgs/Image -> key `<camera>` (rgb8/bgr8 as
  RGB, mono8); `<camera>/aligned_depth_to_color/image_raw`: 16UC1 depth -> key `<camera>_depth`;
- `joint_states` (any namespace): sensor_msgs/JointState -> key `joints`, laid out as the sim's and
  the policy's (`JointsLayout`);
- the step stream (`action`): the policy's or the teleoperator's stamped labelled vector `action`,
  with the `policy_version` that computed it when a policy did;
- anything else: a stamped labelled Float32MultiArray (`privileged_state`, `onboard_vectors`), one key
  per label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray

from robot_nodes.episode_transfer import DEFAULT_CHUNK_BYTES
from robot_nodes.messages import MessageError, from_time, image_from_msg, joint_state_arrays, vectors_from_msg
from robot_nodes.policy_core import JointsLayout
from robot_nodes.recorder_core import VERSION_KEY, RecorderConfig

StreamKind = Literal["image", "joint_state", "vectors", "action"]
MESSAGE_TYPES = {
    "image": Image,
    "joint_state": JointState,
    "vectors": Float32MultiArray,
    "action": Float32MultiArray,
}
DEPTH_SUFFIX = "_depth"


@dataclass
class RecorderNodeConfig(RecorderConfig):
    """The recorder core's settings plus the node's own."""

    READ_ONLY: ClassVar[tuple[str, ...]] = (
        *RecorderConfig.READ_ONLY, "episodes", "joints", "send_episodes", "chunk_bytes", "queue_depth",
    )  # fmt: skip

    # events: episodes start and end with `episode_events` (the sim robot's, or another episode source);
    # control: with `episode_control` commands (an operator's tool), and the recorder publishes the events
    episodes: Literal["events", "control"] = "events"
    joints: JointsLayout = field(default_factory=JointsLayout)
    send_episodes: bool = True  # send each finished episode file on `episode_files` (to aps-learner)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # size of one episode-file chunk on `episode_files`
    # messages a subscription holds while the recorder writes (reliable streams lose none if this covers
    # the longest write pause: 30 = 1 s of a 30 Hz camera)
    queue_depth: int = 30
    startup_timeout: float = 10.0  # seconds to wait for a publisher on every stream

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chunk_bytes < 1024 or self.queue_depth < 1 or self.startup_timeout <= 0:
            raise ValueError("chunk_bytes must be >= 1024, queue_depth >= 1 and startup_timeout > 0")


def stream_kind(topic: str, step_stream: str) -> StreamKind:
    if topic == step_stream:
        return "action"
    name = topic.rstrip("/").rsplit("/", 1)[-1]
    if name == "image_raw" or name.startswith("image"):
        return "image"
    return "joint_state" if name == "joint_states" else "vectors"


def image_key(topic: str) -> str:
    """`wrist/color/image_raw` -> wrist; `wrist/aligned_depth_to_color/image_raw` -> wrist_depth."""
    parts = [p for p in topic.split("/") if p]
    camera = parts[0] if len(parts) > 1 else topic
    return camera + DEPTH_SUFFIX if "depth" in topic else camera


@dataclass
class Decoded:
    stamp_ns: int
    arrays: dict[str, np.ndarray]
    policy_version: int | None = None  # step-stream messages from a policy


class StreamDecoder:
    """Messages of the recorder's streams -> (stamp, named arrays) for `RecorderCore.add`."""

    def __init__(self, config: RecorderNodeConfig) -> None:
        self.joints = config.joints
        self.kinds = {
            topic: stream_kind(topic, config.step_stream)
            for topic in (config.step_stream, *config.onboard_streams, *config.privileged_streams)
        }

    def decode(self, topic: str, msg: Image | JointState | Float32MultiArray) -> Decoded:
        kind = self.kinds[topic]
        if kind == "image":
            image = image_from_msg(msg, ("rgb8", "bgr8", "mono8", "16UC1"))
            return Decoded(from_time(msg.header.stamp), {image_key(topic): image})
        if kind == "joint_state":
            names = [*self.joints.arm, *self.joints.gripper]
            positions, _ = joint_state_arrays(msg, names)
            vector = self.joints.vector(dict(zip(names, positions, strict=True)))
            return Decoded(from_time(msg.header.stamp), {"joints": vector})
        stamp, vectors = vectors_from_msg(msg)
        if stamp is None:
            raise MessageError(f"{topic}: an unstamped labelled vector (publish with vectors_to_msg)")
        if kind == "vectors":
            return Decoded(stamp, vectors)
        if "action" not in vectors:
            raise MessageError(
                f"{topic}: a step message needs a vector named 'action' (it has {sorted(vectors)})"
            )
        version = vectors.get(VERSION_KEY)
        return Decoded(stamp, {"action": vectors["action"]}, None if version is None else int(version[0]))


class DataClock:
    """The time the recorder core's stale checks (`RecorderCore.poll`) should see: the newest stamp
    received on any stream, moved on by the clock since it was received. A recorder that lags (its
    queues full on a loaded machine, or the /clock of a lockstep sim taken before the frames queued
    behind it) is never ahead of its own data, so only a stream that falls silent while the others
    go on, or all of them stopping while the clock runs, is stale."""

    def __init__(self) -> None:
        self.newest_ns: int | None = None  # the newest stamp received
        self.received_at_ns = 0  # the clock when it was received

    def heard(self, stamp_ns: int, clock_ns: int) -> None:
        # A stamp ahead of the clock: a lockstep sim's reset jumps its time past the last episode's
        # horizon, and frames can come before the /clock that says so; time counts from the stamp.
        if self.newest_ns is None or stamp_ns > self.newest_ns:
            self.newest_ns, self.received_at_ns = stamp_ns, max(clock_ns, stamp_ns)

    def now(self, clock_ns: int) -> int | None:
        """None until a message has come."""
        if self.newest_ns is None:
            return None
        return self.newest_ns + max(0, clock_ns - self.received_at_ns)
