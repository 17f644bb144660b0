"""aps-robot-interface: the only node that commands the arm (core: robot_interface_core.py).

    aps-robot-interface --ros-args -p output:=twist

Subscribes to `action` (the policy's stamped labelled vector), `joint_states`, `estop`
(std_msgs/Bool, latched: true holds the arm until false) and `episode_events`; publishes
`servo_node/delta_twist_cmds` (TwistStamped, for MoveIt Servo), `arm_controller/joint_trajectory`
(JointTrajectory) or `forward_position_controller/commands` (Float64MultiArray), plus
`gripper_controller/joint_trajectory`. Every command carries the stamp of the observation its
action came from (a hold: stamp 0); a refused action is one log line and nothing is sent.
"""

from __future__ import annotations

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from robot_nodes.entry import run_node
from robot_nodes.messages import (
    EpisodeEvent,
    MessageError,
    from_time,
    header,
    joint_state_arrays,
    vectors_from_msg,
)
from robot_nodes.params import declare_config, node_options
from robot_nodes.qos import command_qos, latched_qos, sensor_qos
from robot_nodes.robot_interface_core import Command, Refused, RobotInterfaceConfig, RobotInterfaceCore

WATCHDOG_HZ = 100.0  # how often the watchdog looks: a hold comes at most 10 ms after the timeout


class RobotInterfaceNode(Node):
    def __init__(self) -> None:
        super().__init__("robot_interface", **node_options())
        self.config = declare_config(self, RobotInterfaceConfig, on_change=self.on_config)
        self.core = RobotInterfaceCore(self.config)
        cfg = self.config
        self.twist = self.arm_trajectory = self.arm_positions = self.gripper = None
        if cfg.output == "twist":
            self.twist = self.create_publisher(TwistStamped, "servo_node/delta_twist_cmds", command_qos())
        elif cfg.output == "joint_trajectory":
            self.arm_trajectory = self.create_publisher(
                JointTrajectory, "arm_controller/joint_trajectory", command_qos()
            )
        else:
            self.arm_positions = self.create_publisher(
                Float64MultiArray, "forward_position_controller/commands", command_qos()
            )
        if cfg.has_gripper:
            self.gripper = self.create_publisher(
                JointTrajectory, "gripper_controller/joint_trajectory", command_qos()
            )
        self.create_subscription(Float32MultiArray, "action", self.on_action, command_qos())
        self.create_subscription(JointState, "joint_states", self.on_joint_states, sensor_qos(reliable=True))
        self.create_subscription(Bool, "estop", self.on_estop, latched_qos())
        self.create_subscription(String, "episode_events", self.on_episode_event, latched_qos(depth=10))
        self.create_timer(1.0 / WATCHDOG_HZ, self.on_watchdog)
        self.create_timer(1.0 / cfg.control_hz, self.on_hold_tick)

    def on_config(self, config: RobotInterfaceConfig) -> None:
        self.core.config = config  # limits and the watchdog change at run time; outputs are read-only

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- inputs -------------------------------------------------------------------------------
    def on_action(self, msg: Float32MultiArray) -> None:
        try:
            stamp, vectors = vectors_from_msg(msg)
            if stamp is None or "action" not in vectors:
                raise MessageError("an action must be a stamped labelled vector named 'action'")
            command = self.core.on_action(vectors["action"], stamp, self.now_ns())
        except (MessageError, Refused) as err:
            self.get_logger().warning(f"action refused: {err}")
            return
        if command is not None:
            self.send(command)

    def on_joint_states(self, msg: JointState) -> None:
        try:
            positions, _ = joint_state_arrays(msg, self.config.arm_joints)
            command = self.core.on_joint_states(positions, from_time(msg.header.stamp), self.now_ns())
        except MessageError as err:
            self.get_logger().error(str(err), throttle_duration_sec=1.0)
            return
        except Refused as err:
            self.get_logger().warning(f"action refused: {err}")
            return
        if command is not None:
            self.send(command)

    def on_estop(self, msg: Bool) -> None:
        self.get_logger().warning(f"e-stop {'ENGAGED: holding the arm' if msg.data else 'released'}")
        command = self.core.on_estop(msg.data)
        if command is not None:
            self.send(command)

    def on_episode_event(self, msg: String) -> None:
        try:
            event = EpisodeEvent.from_msg(msg)
        except MessageError as err:
            self.get_logger().warning(str(err))
            return
        if event.kind == "start":
            self.core.on_episode_start(event.stamp_ns, event.until_ns)

    def on_watchdog(self) -> None:
        command = self.core.check_watchdog(self.now_ns())
        if command is not None:
            waiting = self.core.waiting
            why = (
                f" (an action waits for joint_states stamped at or after {waiting[1]} ns; the newest is "
                f"{self.core.measured_ns}: is the arm's driver publishing, on this clock?)"
                if waiting is not None
                else ""
            )
            self.get_logger().warning(
                f"no fresh action for {self.config.watchdog_timeout * 1e3:.0f} ms: holding the arm{why}",
                throttle_duration_sec=5.0,
            )
            self.send(command)

    def on_hold_tick(self) -> None:
        if self.core.holding and self.core.last_stamp is not None:
            self.send(self.core.hold_command())

    # --- outputs ------------------------------------------------------------------------------
    def send(self, command: Command) -> None:
        cfg, stamp = self.config, header(command.stamp_ns, "base")
        step = Duration(nanosec=int(1e9 / cfg.control_hz))
        if self.twist is not None and command.linear is not None:
            msg = TwistStamped(header=stamp)
            msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in command.linear)
            msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (
                float(v) for v in command.angular
            )
            self.twist.publish(msg)
        if command.joints is not None:
            positions = [float(v) for v in command.joints]
            if self.arm_trajectory is not None:
                point = JointTrajectoryPoint(positions=positions, time_from_start=step)
                self.arm_trajectory.publish(
                    JointTrajectory(header=stamp, joint_names=cfg.arm_joints, points=[point])
                )
            if self.arm_positions is not None:
                self.arm_positions.publish(Float64MultiArray(data=positions))
        if self.gripper is not None and command.gripper is not None:
            point = JointTrajectoryPoint(positions=[command.gripper], time_from_start=step)
            self.gripper.publish(
                JointTrajectory(header=stamp, joint_names=[cfg.gripper_joint], points=[point])
            )


def main(args: list[str] | None = None) -> int:
    return run_node(RobotInterfaceNode, args, "robot_interface")


if __name__ == "__main__":
    raise SystemExit(main())
