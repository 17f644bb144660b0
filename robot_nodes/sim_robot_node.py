"""aps-sim-robot: a MuJoCo task behind the real robot's topics (core: sim_robot_core.py).

    aps-sim-robot --ros-args -p task:=search-pick -p env.image_size:=32 -p lockstep:=true

Publishes `joint_states`, `<camera>/color/image_raw` + `<camera>/color/camera_info` for each onboard
camera, `privileged_state` (with the sim's `reward` and `success` for the step beside the task's
privileged keys) and `onboard_vectors` (stamped labelled Float32MultiArray) and
`episode_events`; obeys `servo_node/delta_twist_cmds` + `gripper_controller/joint_trajectory`,
`arm_controller/joint_trajectory`, `forward_position_controller/commands` or `action`
(`command_input`); `~/reset` (std_srvs/Trigger) starts an episode with the `next_seed` parameter's
seed (or the next of the sequence) and answers the episode and seed as JSON (in lockstep it fails,
saying why, until the graph is connected: call it again). In lockstep it also
publishes the sim's time on `/clock` (rosgraph_msgs/Clock), the time its stamps are in: the other
nodes of a lockstep graph run with `use_sim_time:=true` (aps-launch and the launch files set it).
"""

from __future__ import annotations

import json
import time

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.topic_endpoint_info import TopicEndpointInfo
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from robot_nodes.entry import StartupError, run_node
from robot_nodes.messages import (
    EpisodeEvent,
    MessageError,
    camera_info_to_msg,
    from_time,
    image_to_msg,
    joint_state_to_msg,
    outcome_vectors,
    pinhole_camera,
    to_time,
    vectors_from_msg,
    vectors_to_msg,
)
from robot_nodes.params import declare_config, node_options
from robot_nodes.qos import clock_qos, command_qos, image_qos, latched_qos, sensor_qos
from robot_nodes.sim_robot_core import Observation, SimRobotConfig, SimRobotCore
from sim.scene import ARM_JOINTS

ARM_COMMAND_TOPICS = {
    "twist": "servo_node/delta_twist_cmds",
    "joint_trajectory": "arm_controller/joint_trajectory",
    "joint_positions": "forward_position_controller/commands",
    "action": "action",
}
GRIPPER_TOPIC = "gripper_controller/joint_trajectory"


def node_names(endpoints: list[TopicEndpointInfo]) -> set[tuple[str, str]]:
    return {(endpoint.node_namespace, endpoint.node_name) for endpoint in endpoints}


class SimRobotNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_robot", **node_options())
        self.config = declare_config(self, SimRobotConfig)
        cfg, size = self.config, self.config.env.image_size
        if not cfg.lockstep and self.get_parameter("use_sim_time").value:
            raise StartupError("use_sim_time needs lockstep:=true (only a lockstep sim publishes /clock)")
        self.core = SimRobotCore(self.config)
        # lockstep: one lost observation or command would stall the loop, so sensors are reliable too
        self.images = {
            cam: self.create_publisher(
                Image, f"{cam}/color/image_raw", image_qos(size, size, 3, reliable=cfg.lockstep)
            )
            for cam in self.core.cameras
        }
        self.camera_infos = {
            cam: self.create_publisher(CameraInfo, f"{cam}/color/camera_info", latched_qos())
            for cam in self.core.cameras
        }
        self.intrinsics = {
            cam: pinhole_camera(cam, float(self.core.env.model.camera(cam).fovy[0]), size, size)
            for cam in self.core.cameras
        } if self.core.arm else {}  # fmt: skip
        sensors = sensor_qos(reliable=cfg.lockstep)
        # reliable as ros2_control's joint_state_broadcaster publishes it: the robot interface needs each one
        self.joint_states = self.create_publisher(JointState, "joint_states", sensor_qos(reliable=True))
        self.onboard_vectors = self.create_publisher(Float32MultiArray, "onboard_vectors", sensors)
        self.privileged = self.create_publisher(Float32MultiArray, "privileged_state", sensors)
        self.events = self.create_publisher(String, "episode_events", latched_qos(depth=10))
        arm_topic = ARM_COMMAND_TOPICS[cfg.command_input]
        self.command_topics = [arm_topic] + (
            [GRIPPER_TOPIC] if self.core.has_gripper and cfg.command_input != "action" else []
        )
        arm_types = {
            "twist": TwistStamped,
            "joint_trajectory": JointTrajectory,
            "joint_positions": Float64MultiArray,
            "action": Float32MultiArray,
        }
        self.create_subscription(arm_types[cfg.command_input], arm_topic, self.on_arm_command, command_qos())
        if GRIPPER_TOPIC in self.command_topics:
            self.create_subscription(JointTrajectory, GRIPPER_TOPIC, self.on_gripper_command, command_qos())
        self.create_service(Trigger, "~/reset", self.on_reset)
        self.connected = not cfg.lockstep  # on the wall clock, observations flow whoever listens
        if cfg.lockstep:
            self.clock = self.create_publisher(Clock, "/clock", clock_qos())
            # sim time stands still until the first observation: wait for the graph on the steady clock
            steady = RosClock(clock_type=ClockType.STEADY_TIME)
            self.connect_timer = self.create_timer(0.1, self.check_connected, clock=steady)
            self.sent: tuple[float, Observation] | None = None  # the last observation, when (monotonic)
            if cfg.resend_after:
                self.create_timer(min(0.5, cfg.resend_after / 2), self.resend_if_unanswered, clock=steady)
        else:
            self.create_timer(1.0 / self.core.env.control_hz, self.on_control_tick)

    # --- episodes -----------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def stamp_ns(self, new_episode: bool = False) -> int:
        """The next observation's stamp: lockstep, the sim's time one step on; else ROS time now."""
        return self.core.sim_stamp(new_episode) if self.config.lockstep else self.now_ns()

    def check_connected(self) -> None:
        """Lockstep: the graph is connected (and the first episode may start, by itself or on ~/reset)
        once every onboard topic has a reader, each reader the graph knows of is matched to this
        node's writer (a message sent before that is lost to it), every command topic has a writer,
        every node of `wait_for_readers` reads the observations, and every node that commands the arm
        reads joint_states (the robot interface acts only on a pose at least as new as the action's
        observation)."""
        onboard = {f"{cam}/color/image_raw": self.images[cam] for cam in self.core.onboard_cameras}
        onboard |= {"joint_states": self.joint_states} if self.core.arm else {}
        onboard |= {"onboard_vectors": self.onboard_vectors} if self.core.vector_keys else {}
        matched = (
            all(
                0 < self.count_subscribers(topic) <= writer.get_subscription_count()
                for topic, writer in onboard.items()
            )
            and self.count_subscribers("privileged_state") <= self.privileged.get_subscription_count()
        )
        commanded = all(self.count_publishers(topic) > 0 for topic in self.command_topics)
        if not (matched and commanded and self.commanders_read_joint_states()):
            return
        missing = self.awaited_readers_missing(list(onboard))
        if missing:  # connected but for them
            self.get_logger().warning(
                "first episode waits for "
                + "; ".join(f"{name} to read {unread}" for name, unread in missing.items())
                + " (wait_for_readers)",
                throttle_duration_sec=5.0,
            )
            return
        self.destroy_timer(self.connect_timer)
        self.connected = True
        if self.config.autostart:
            self.start_episode(self.core.next_seed())

    def awaited_readers_missing(self, topics: list[str]) -> dict[str, list[str]]:
        """The nodes of `wait_for_readers` that do not read every one of `topics` yet (a policy acts on
        every onboard stream, a recorder records them), each with the topics it does not read."""
        readers = {
            t: {name for _, name in node_names(self.get_subscriptions_info_by_topic(t))} for t in topics
        }
        missing = {
            name: [t for t in topics if name not in readers[t]] for name in self.config.wait_for_readers
        }
        return {name: unread for name, unread in missing.items() if unread}

    def commanders_read_joint_states(self) -> bool:
        if not self.core.arm or self.config.command_input == "action":
            return True
        commanders = set().union(
            *(node_names(self.get_publishers_info_by_topic(topic)) for topic in self.command_topics)
        )
        return commanders <= node_names(self.get_subscriptions_info_by_topic("joint_states"))

    def start_episode(self, seed: int) -> None:
        stamp = self.stamp_ns(new_episode=True)
        observation = self.core.reset(seed, stamp)
        core = self.core
        event = EpisodeEvent("start", core.episode, seed, stamp, self.config.task, until_ns=core.until_ns)
        self.events.publish(event.to_msg())
        self.publish_observation(observation)

    def end_episode(self, stamp: int, success: bool, truncated: bool) -> None:
        core = self.core
        event = EpisodeEvent(
            "end", core.episode, core.seed, stamp, self.config.task, core.steps, success, truncated
        )
        self.events.publish(event.to_msg())
        more = not self.config.max_episodes or core.episode + 1 < self.config.max_episodes
        if self.config.auto_reset and more:
            self.start_episode(core.next_seed())

    def on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if not self.connected:
            response.success = False
            response.message = (
                "lockstep graph not connected yet (every observation topic needs a matched reader, "
                "every command topic a writer, and the nodes of wait_for_readers must read): call again"
            )
            return response
        if not self.core.done:  # an episode cut short ends as truncated
            self.events.publish(
                EpisodeEvent(
                    "end",
                    self.core.episode,
                    self.core.seed,
                    self.core.clock_ns,
                    self.config.task,
                    self.core.steps,
                    False,
                    True,
                ).to_msg()
            )
        seed = self.core.next_seed(self.get_parameter("next_seed").value)
        self.set_parameters([Parameter("next_seed", value=-1)])
        self.start_episode(seed)
        response.success, response.message = True, json.dumps({"episode": self.core.episode, "seed": seed})
        return response

    # --- commands and steps -------------------------------------------------------------------
    def on_arm_command(
        self, msg: TwistStamped | JointTrajectory | Float64MultiArray | Float32MultiArray
    ) -> None:
        try:
            stamp, values = self.arm_values(msg)
        except MessageError as err:
            self.get_logger().warning(f"command ignored: {err}")
            return
        self.core.on_arm_command(stamp, values)
        self.step_if_ready()

    def arm_values(self, msg) -> tuple[int, np.ndarray]:
        if isinstance(msg, TwistStamped):
            t = msg.twist
            return from_time(msg.header.stamp), np.array(
                [t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]
            )
        if isinstance(msg, JointTrajectory):
            if not msg.points or list(msg.joint_names) != list(ARM_JOINTS):
                raise MessageError(f"arm trajectory must name {list(ARM_JOINTS)} and hold a point")
            return from_time(msg.header.stamp), np.asarray(msg.points[-1].positions, dtype=np.float64)
        if isinstance(msg, Float32MultiArray):
            stamp, vectors = vectors_from_msg(msg)
            if stamp is None or "action" not in vectors:
                raise MessageError("an action must be a stamped labelled vector named 'action'")
            return stamp, vectors["action"]
        return self.now_ns(), np.asarray(msg.data, dtype=np.float64)  # forward position controller: unstamped

    def on_gripper_command(self, msg: JointTrajectory) -> None:
        if not msg.points or not msg.points[-1].positions:
            self.get_logger().warning("gripper command ignored: no trajectory point")
            return
        self.core.on_gripper_command(from_time(msg.header.stamp), float(msg.points[-1].positions[0]))
        self.step_if_ready()

    def step_if_ready(self) -> None:
        if self.config.lockstep and self.core.lockstep_ready():
            self.step()

    def on_control_tick(self) -> None:
        if self.core.done:
            more = not self.config.max_episodes or self.core.episode + 1 < self.config.max_episodes
            first = self.core.episode < 0
            if (first and self.config.autostart) or (not first and self.config.auto_reset and more):
                self.start_episode(self.core.next_seed())
            return
        self.step()

    def step(self) -> None:
        stamp = self.stamp_ns()
        result = self.core.step(stamp)
        self.publish_observation(result.observation)
        if result.done:
            self.end_episode(stamp, result.success, result.truncated)

    def resend_if_unanswered(self) -> None:
        if self.sent is None or self.core.done:
            return
        sent_at, observation = self.sent
        if time.monotonic() - sent_at >= self.config.resend_after:
            self.get_logger().warning(
                f"no command for the observation stamped {observation.stamp_ns} after "
                f"{self.config.resend_after:g} s: sending it again (a reader may have missed it)",
                throttle_duration_sec=5.0,
            )
            self.publish_observation(observation)

    def publish_observation(self, observation: Observation) -> None:
        stamp = observation.stamp_ns
        if self.config.lockstep:
            self.clock.publish(Clock(clock=to_time(stamp)))
            self.sent = (time.monotonic(), observation)
        for cam, image in observation.images.items():
            frame = f"{cam}_color_optical_frame"
            self.camera_infos[cam].publish(camera_info_to_msg(self.intrinsics[cam], stamp, frame))
            self.images[cam].publish(image_to_msg(image, stamp, frame))
        if observation.joint_names:
            msg = joint_state_to_msg(
                observation.joint_names, observation.joint_positions, stamp, observation.joint_velocities
            )
            msg.header.frame_id = self.config.base_frame
            self.joint_states.publish(msg)
        if observation.onboard_vectors:
            self.onboard_vectors.publish(vectors_to_msg(observation.onboard_vectors, stamp))
        outcome = outcome_vectors(observation.reward, observation.success)  # for recorders (reward=stream)
        self.privileged.publish(vectors_to_msg({**observation.privileged, **outcome}, stamp))

    def destroy_node(self) -> None:
        self.core.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(SimRobotNode, args, "sim_robot")


if __name__ == "__main__":
    raise SystemExit(main())
