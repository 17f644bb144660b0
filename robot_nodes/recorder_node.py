"""aps-recorder: the robot's (or sim robot's) streams, synchronised at the control rate, into episode files
(core: recorder_core.py; streams and settings: recorder_streams.py).

    aps-recorder --ros-args -p dataset:=data/online -p task:=search-pick -p reward:=label \\
        -p "onboard_streams:=[wrist/color/image_raw, joint_states]"

Subscribes to every stream it records (`onboard_streams`, `privileged_streams`, the `step_stream`
`action`) and to `episode_events` (episodes=events: the sim robot starts and ends episodes) or
`episode_control` (episodes=control: std_msgs/String JSON {"command": "start" | "end" | "discard",
"success": true | false | null, "seed": n}, e.g. from an operator; the recorder then publishes the
episode events). Each finished episode goes on `~/episodes` (String JSON: path, status, steps,
success, sync counts) and, with send_episodes, as its file on `episode_files` to the learner.

QoS: each stream is subscribed reliable when its publishers offer reliable (the camera node's
images, a lockstep sim, joint_states), so nothing is dropped, with `queue_depth` messages held
while the recorder writes; best effort only where the publisher is best effort (a reliable reader
would not match it). Streams that stay silent for `stale_after` during an episode close it, marked.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from functools import partial

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from robot_nodes.entry import StartupError, run_node
from robot_nodes.episode_topic import EpisodeSender
from robot_nodes.messages import EpisodeEvent, MessageError
from robot_nodes.params import declare_config, node_options
from robot_nodes.qos import command_qos, latched_qos
from robot_nodes.recorder_core import EpisodeRecord, RecorderCore, RecorderError
from robot_nodes.recorder_streams import (
    MESSAGE_TYPES,
    DataClock,
    RecorderNodeConfig,
    StreamDecoder,
    StreamKind,
)


def subscribe_streams(
    node: Node,
    kinds: dict[str, StreamKind],
    config: RecorderNodeConfig,
    callback: Callable[[str, object], None],
) -> dict[str, QoSProfile]:
    """Subscribe `callback(topic, msg)` to every stream, once each has a publisher (StartupError after
    `startup_timeout`): reliable where every publisher is reliable, else best effort. Returns the QoS."""
    deadline = time.monotonic() + config.startup_timeout
    while missing := [t for t in kinds if not node.get_publishers_info_by_topic(t)]:
        if time.monotonic() > deadline:
            raise StartupError(
                f"no publisher on {missing} after {config.startup_timeout:g} s: start the robot (or sim "
                "robot) and the policy or teleop, or name the streams (onboard_streams:=[...])"
            )
        time.sleep(0.05)
    profiles = {}
    for topic, kind in kinds.items():
        offered = [info.qos_profile.reliability for info in node.get_publishers_info_by_topic(topic)]
        reliable = all(r == ReliabilityPolicy.RELIABLE for r in offered)
        profiles[topic] = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=config.queue_depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )  # fmt: skip
        node.create_subscription(MESSAGE_TYPES[kind], topic, partial(callback, topic), profiles[topic])
    return profiles


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder", **node_options())
        self.config = declare_config(self, RecorderNodeConfig)
        self.core = RecorderCore(self.config)
        self.decoder = StreamDecoder(self.config)
        qos = subscribe_streams(self, self.decoder.kinds, self.config, self.on_message)
        self.events = None
        if self.config.episodes == "events":
            self.create_subscription(String, "episode_events", self.on_episode_event, latched_qos(depth=10))
        else:
            self.events = self.create_publisher(String, "episode_events", latched_qos(depth=10))
            self.create_subscription(String, "episode_control", self.on_control, command_qos())
        self.records = self.create_publisher(String, "~/episodes", latched_qos(depth=10))
        self.sender = EpisodeSender(self, self.config.chunk_bytes) if self.config.send_episodes else None
        self.last_step_ns: int | None = None  # the newest step-stream stamp
        self.data_clock = DataClock()
        self.pending: deque[EpisodeEvent] = deque()  # episode_events not yet given to the core
        self.sources: dict[int, int] = {}  # the core's episode -> the source's (episode_events)
        self.expected_steps: dict[int, int] = {}  # the core's episode -> the steps its source took
        self.create_timer(1.0 / self.config.control_hz, self.on_tick)
        reliable = sorted(t for t, q in qos.items() if q.reliability == ReliabilityPolicy.RELIABLE)
        self.get_logger().info(
            f"recording {sorted(self.decoder.kinds)} into {self.config.dataset} ({self.config.episodes}); "
            f"reliable: {reliable}"
        )

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- inputs -------------------------------------------------------------------------------
    def on_message(self, topic: str, msg: object) -> None:
        try:
            decoded = self.decoder.decode(topic, msg)
            self.data_clock.heard(decoded.stamp_ns, self.now_ns())
            if topic == self.config.step_stream:
                self.last_step_ns = max(self.last_step_ns or 0, decoded.stamp_ns)
            self.core.add(topic, decoded.stamp_ns, decoded.arrays, decoded.policy_version)
        except (MessageError, RecorderError) as err:
            self.get_logger().warning(f"{topic}: {err}", throttle_duration_sec=1.0)
        self.flush()

    def on_episode_event(self, msg: String) -> None:
        try:
            self.pending.append(EpisodeEvent.from_msg(msg))
        except MessageError as err:
            self.get_logger().warning(f"episode event: {err}")
        self.flush()

    def apply_events(self) -> None:
        """The episode source's events, in order, each once the core can take it: under load they
        come well before the frames of the steps before them, and the core closes an episode, or
        starts the next one, only when its frames are in."""
        while self.pending:
            event = self.pending[0]
            episode, queued = self.core.episode, self.core.queued_start
            if event.kind == "start":
                if queued is not None or (episode is not None and episode.ending is None):
                    return  # the episode before is still open or closing: its end comes first
                started = self.core.start(event.stamp_ns, event.seed, attrs={"source_episode": event.episode})
                self.sources[started.episode] = event.episode
            else:
                ours = [index for index, source in self.sources.items() if source == event.episode]
                if ours and queued is not None and queued.index == ours[-1]:
                    return  # it has not opened yet: the one before it is closing
                if ours and episode is not None and episode.index == ours[-1]:
                    self.core.end(event.stamp_ns, event.success, event.truncated)
                    self.expected_steps[ours[-1]] = event.steps
            self.pending.popleft()

    def on_control(self, msg: String) -> None:
        try:
            command = json.loads(msg.data)
            kind = command["command"]
            if kind == "start":
                self.core.start(self.now_ns(), int(command.get("seed", -1)))
            elif kind == "end":  # at the newest observation acted on: the episode's last one
                self.core.end(self.last_step_ns, success=command.get("success"))
            elif kind == "discard":
                self.core.discard()
            else:
                raise RecorderError(f"unknown command {kind!r}: start, end or discard")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            self.get_logger().warning(f"episode_control: {err} (in {msg.data[:80]!r})")
        self.flush()

    def on_tick(self) -> None:
        now = self.data_clock.now(self.now_ns())
        if now is not None:
            self.core.poll(now)
        self.flush()

    # --- outputs ------------------------------------------------------------------------------
    def flush(self) -> None:
        try:
            self.apply_events()
        except RecorderError as err:
            self.get_logger().warning(f"episode event {self.pending.popleft()}: {err}")
        for event in self.core.drain_events():
            if self.events is not None and self.context.ok():
                self.events.publish(event.to_msg())
        for record in self.core.drain_records():
            self.report(record)

    def report(self, record: EpisodeRecord) -> None:
        expected = self.expected_steps.pop(record.episode, None)
        if record.status == "complete" and expected is not None and record.steps < expected:
            # its first steps came before the recorder listened, or were lost: not a whole episode
            self.get_logger().warning(
                f"episode {record.episode}: {record.steps} of its {expected} steps recorded: not kept"
            )
            self.core.dataset.remove(record.path)
            record = dataclasses.replace(
                record, status="empty", path=None, reason=f"{record.steps} of {expected} steps"
            )
        summary = {
            "episode": record.episode, "seed": record.seed, "status": record.status,
            "path": str(record.path) if record.path else None, "steps": record.steps,
            "success": record.success, "reason": record.reason, "policy_version": record.policy_version,
            "sync": asdict(record.sync),
        }  # fmt: skip
        line = f"episode {record.episode} (seed {record.seed}): {record.status}, {record.steps} steps"
        if record.status == "interrupted":
            self.get_logger().warning(f"{line}: {record.reason}; kept as {record.path}")
        else:
            self.get_logger().info(
                f"{line}, success {record.success}" + (f": {record.reason}" if record.reason else "")
            )
        if self.context.ok():  # at shutdown (Ctrl-C) the record is still logged, and the file kept
            self.records.publish(String(data=json.dumps(summary)))
        if record.path is not None and self.sender is not None:
            self.sender.send(record.path)

    def destroy_node(self) -> None:
        self.core.close()  # an episode in progress is kept, marked interrupted
        self.flush()
        if self.sender is not None:
            self.sender.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args, "recorder", finish_callbacks=True)  # it writes files


if __name__ == "__main__":
    raise SystemExit(main())
