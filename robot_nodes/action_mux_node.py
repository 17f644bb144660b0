"""aps-action-mux: forwards the actions of the selected policy to the robot interface (core:
action_mux_core.py, which says why evaluation sessions switch policies this way).

    aps-action-mux --ros-args -p "sources:=[policy_0/action, policy_1/action]"

Subscribes to every source (stamped labelled Float32MultiArray actions, reliable) and to `~/select`
(std_msgs/String: a source's topic, or empty for none; renew it within `lease` seconds); publishes
the selected source's messages unchanged on `action` and the selection in force on `~/selected`
(std_msgs/String, transient-local), at every change, so a session sees the switch has happened.
"""

from __future__ import annotations

import time
from functools import partial

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, String

from robot_nodes.action_mux_core import ActionMuxConfig, ActionMuxCore, SelectionError
from robot_nodes.entry import run_node
from robot_nodes.params import declare_config, node_options
from robot_nodes.qos import command_qos, latched_qos

LEASE_CHECK_HZ = 20.0


class ActionMuxNode(Node):
    def __init__(self) -> None:
        super().__init__("action_mux", **node_options())
        self.config = declare_config(self, ActionMuxConfig)
        self.core = ActionMuxCore(self.config)
        self.actions = self.create_publisher(Float32MultiArray, "action", command_qos())
        self.selected = self.create_publisher(String, "~/selected", latched_qos())
        for source in self.config.sources:
            forward = partial(self.on_action, source)
            self.create_subscription(Float32MultiArray, source, forward, command_qos())
        self.create_subscription(String, "~/select", self.on_select, command_qos())
        # the lease runs on the steady clock: sim time stands still exactly when a session may be gone
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / LEASE_CHECK_HZ, self.on_lease_check, clock=steady)
        self.selected.publish(String(data=self.core.selected))
        self.get_logger().info(f"sources {self.config.sources}; forwarding nothing until selected")

    def on_action(self, source: str, msg: Float32MultiArray) -> None:
        if self.core.forward(source):
            self.actions.publish(msg)

    def on_select(self, msg: String) -> None:
        try:
            change = self.core.select(msg.data, time.monotonic())
        except SelectionError as err:
            self.get_logger().error(f"selection refused: {err}")
            return
        if change:
            self.get_logger().info(change)
            self.selected.publish(String(data=self.core.selected))

    def on_lease_check(self) -> None:
        lapsed = self.core.lapse(time.monotonic())
        if lapsed:
            self.get_logger().warning(lapsed)
            self.selected.publish(String(data=self.core.selected))


def main(args: list[str] | None = None) -> int:
    return run_node(ActionMuxNode, args, "action_mux")


if __name__ == "__main__":
    raise SystemExit(main())
