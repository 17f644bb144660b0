"""aps-policy: the recurrent policy on the robot, onboard topics only (core: policy_core.py).

    aps-policy --ros-args -p checkpoint:=runs/<run>/checkpoints/aawr-seed0 -p task:=search-pick

Subscribes to the onboard topics its checkpoint's card names (`<camera>/color/image_raw`,
`joint_states`, `onboard_vectors`; `topics` remaps keys), `episode_events` and `policy_weights`
(std_msgs/UInt8MultiArray, reliable and transient-local: `robot_nodes.weights_topic`); publishes
`action` (a labelled Float32MultiArray `{"action": [...], "policy_version": [v]}` stamped with the
frames it acted on; the version lets the recorder and a probe tell which weights acted).
It refuses to start when a needed topic has no publisher after `startup_timeout`. Camera images
(rgb8, or bgr8 converted) of another size than the checkpoint's are centre-cropped and resized to
it (`image_fit`, policies.images.fit_image); a 640x480 camera needs `reliable_sensors:=true`.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, String, UInt8MultiArray

from robot_nodes.entry import StartupError, run_node
from robot_nodes.messages import (
    EpisodeEvent,
    MessageError,
    from_time,
    image_from_msg,
    joint_state_arrays,
    vectors_from_msg,
    vectors_to_msg,
)
from robot_nodes.params import declare_config, node_options
from robot_nodes.policy_core import PolicyCore, PolicyNodeConfig, WeightsError
from robot_nodes.qos import command_qos, latched_qos, sensor_qos
from robot_nodes.weights_topic import WEIGHTS_TOPIC

MESSAGE_TYPES = {"image": Image, "joint_state": JointState, "vectors": Float32MultiArray}


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy", **node_options())
        self.config = declare_config(self, PolicyNodeConfig)
        self.core = PolicyCore(self.config)
        self.wait_for_publishers()
        sensors = sensor_qos(self.config.reliable_sensors)
        for topic, kind in self.core.topic_kinds.items():
            self.create_subscription(MESSAGE_TYPES[kind], topic, partial(self.on_frame, topic), sensors)
        self.create_subscription(String, "episode_events", self.on_episode_event, latched_qos(depth=10))
        self.create_subscription(UInt8MultiArray, WEIGHTS_TOPIC, self.on_weights, latched_qos())
        self.actions = self.create_publisher(Float32MultiArray, "action", command_qos())
        # An action sent before a reader matched is lost to it (and stalls a lockstep graph): act once
        # the writer is matched to every reader the graph knows of, and to one at least.
        self.listened = False
        steady = RosClock(clock_type=ClockType.STEADY_TIME)  # sim time may stand still until it acts
        self.listen_timer = self.create_timer(0.05, self.check_listeners, clock=steady)
        if self.config.act_on == "timer":
            self.create_timer(1.0 / self.config.control_hz, self.tick)
        self.get_logger().info(
            f"policy v{self.core.version} for {self.core.task}: {self.core.key_topics} -> action"
        )

    def wait_for_publishers(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        while True:
            missing = [t for t in self.core.topic_kinds if self.count_publishers(t) == 0]
            if not missing:
                return
            if time.monotonic() > deadline:
                keys = {t: [k for k, v in self.core.key_topics.items() if v == t] for t in missing}
                raise StartupError(
                    f"no publisher on {missing} after {self.config.startup_timeout:g} s (needed for onboard "
                    f"keys {keys}): start the camera/robot nodes, or map the keys with topics:=[key=topic]"
                )
            time.sleep(0.05)

    def check_listeners(self) -> None:
        if self.actions.get_subscription_count() >= max(1, self.count_subscribers(self.actions.topic_name)):
            self.listened = True
            self.destroy_timer(self.listen_timer)
            self.tick()

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- callbacks: store, then maybe act --------------------------------------------------------
    def on_frame(self, topic: str, msg: Image | JointState | Float32MultiArray) -> None:
        stamp = (
            vectors_from_msg(msg)[0] if isinstance(msg, Float32MultiArray) else from_time(msg.header.stamp)
        )
        if stamp is None:
            self.get_logger().warning(
                f"{topic}: unstamped labelled vector ignored (publish with vectors_to_msg)"
            )
            return
        problem = self.core.frames.add(topic, stamp, msg)
        if problem:
            self.get_logger().warning(problem)
        elif self.config.act_on == "frames":
            self.tick()

    def on_episode_event(self, msg: String) -> None:
        try:
            event = EpisodeEvent.from_msg(msg)
        except MessageError as err:
            self.get_logger().warning(str(err))
            return
        if event.kind == "start":
            self.core.on_episode_start(event.episode, event.seed, event.stamp_ns, event.until_ns)
        else:
            self.core.on_episode_end(event.episode, event.stamp_ns)
        if self.config.act_on == "frames":
            self.tick()  # frames of the new episode may have come first

    def on_weights(self, msg: UInt8MultiArray) -> None:
        try:
            self.get_logger().info(self.core.offer_weights(bytes(msg.data)))
        except WeightsError as err:
            self.get_logger().error(f"weights refused, version {self.core.version} keeps acting: {err}")

    def tick(self) -> None:
        if not self.listened:
            return
        found = self.core.frames.freshest_set(int(self.config.sync_tolerance * 1e9))
        if found is None:
            return
        stamp, messages = found
        reason = self.core.ready(stamp, self.now_ns())
        if reason is not None:
            if reason:
                self.get_logger().warning(reason, throttle_duration_sec=1.0)
            return
        try:
            onboard = self.onboard(messages)
        except MessageError as err:
            self.get_logger().error(f"not acting: {err}", throttle_duration_sec=1.0)
            return
        action = self.core.act(stamp, onboard)
        version = np.array([self.core.version], dtype=np.float32)  # exact up to 2**24 versions
        self.actions.publish(vectors_to_msg({"action": action, "policy_version": version}, stamp))

    def onboard(self, messages: dict) -> dict[str, np.ndarray]:
        onboard = {}
        for key, topic in self.core.key_topics.items():
            kind, msg = self.core.topic_kinds[topic], messages[topic]
            if kind == "image":
                onboard[key] = image_from_msg(msg)
            elif kind == "joint_state":
                layout = self.config.joints
                names = [*layout.arm, *layout.gripper]
                positions, _ = joint_state_arrays(msg, names)
                onboard[key] = layout.vector(dict(zip(names, positions, strict=True)))
            else:
                vectors = vectors_from_msg(msg)[1]
                if key not in vectors:
                    raise MessageError(f"{topic} has no vector {key!r} (it has {sorted(vectors)})")
                onboard[key] = vectors[key]
            onboard[key] = self.core.fit(key, onboard[key])
        return onboard


def main(args: list[str] | None = None) -> int:
    torch.set_num_threads(1)  # batch-1 steps: a second thread costs more in handoffs than it gains
    return run_node(PolicyNode, args, "policy")


if __name__ == "__main__":
    raise SystemExit(main())
