"""aps-record live over ROS 2: a teleoperator drives the robot (or the sim robot) graph and the episodes
are recorded in this process, through the recorder core, from the same topics aps-recorder reads.

    aps-launch record robot:=sim          # sim robot + robot interface (or robot:=real on hardware)
    aps-record mode=ros source=keyboard   # then this

The teleop's action goes out on `action` (a stamped labelled vector, as the policy's: the robot
interface turns it into arm commands) at `ros.control_hz`, each stamped with the newest observation
(the frames it answers), and goes into the recording as its step. With the sim robot, each episode
starts with its reset service (a new scene) and ends by a key or by the sim (success, step limit);
on a real robot (ros.reset_service empty) the operator resets the scene in the reset phase and this
node publishes the episode events. ROS callbacks run on a thread of their own, the keys and screen
on the main one; one lock guards the recorder core. In a lockstep sim graph (a /clock publisher is
found) the node runs on sim time, and acts on a steady timer, so the sim still moves at the control
rate of the person driving it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Float32MultiArray, String
from std_srvs.srv import Trigger

from robot_nodes.graph_client import add_to_core, call_sim_reset, keep_event, wait_until
from robot_nodes.messages import EpisodeEvent, MessageError, vectors_to_msg
from robot_nodes.qos import command_qos, latched_qos, sensor_qos
from robot_nodes.record_cli import RecordConfig, RecordingError, action_layout, saved_path
from robot_nodes.record_session import BackendStats, Ended
from robot_nodes.recorder_core import RecorderCore
from robot_nodes.recorder_node import subscribe_streams
from robot_nodes.recorder_streams import DataClock, RecorderNodeConfig, StreamDecoder
from robot_nodes.teleop import JoyTeleop, KeyboardTeleop, LeaderArmTeleop

NS = 1_000_000_000
T = TypeVar("T")
DISCOVERY_S = 1.0  # time for the graph's publishers (and /clock) to be discovered


class RosBackend:
    def __init__(self, config: RecordConfig) -> None:
        self.config = ros = config.ros
        self.source = config.source
        self.recorder_config = RecorderNodeConfig(
            dataset=config.dataset, task=config.task, source="demo", control_hz=ros.control_hz,
            onboard_streams=ros.onboard_streams, privileged_streams=ros.privileged_streams, reward=ros.reward,
            sync_tolerance=ros.sync_tolerance, stale_after=ros.stale_after,
            min_free_space_mb=config.min_free_space_mb, joints=ros.joints, episodes="control",
            send_episodes=False, startup_timeout=ros.startup_timeout,
        )  # fmt: skip
        self.core = RecorderCore(self.recorder_config)  # storage checked before anything moves
        layout = action_layout(config.task)
        self.teleop = KeyboardTeleop(layout, config.keyboard) if config.source == "keyboard" else None
        self.joy_teleop = JoyTeleop(layout, config.joy) if config.source == "joy" else None
        self.leader_teleop = (
            LeaderArmTeleop(layout, config.leader, ros.follower_urdf, ros.joints.arm)
            if config.source == "leader"
            else None
        )
        rclpy.init()
        self.node = rclpy.create_node("aps_record")
        self.lock = threading.Lock()
        self.decoder = StreamDecoder(self.recorder_config)
        observed = {t: k for t, k in self.decoder.kinds.items() if t != self.recorder_config.step_stream}
        self.newest: dict[str, int] = {}  # observation stream -> newest stamp
        self.data_clock = DataClock()
        self.follower: np.ndarray | None = None  # the arm's joints (leader teleop)
        self.joy: tuple[list[float], list[int]] | None = None
        self.leader: dict[str, float] | None = None
        self.events: dict[tuple[str, int], EpisodeEvent] = {}  # the sim's (kind, episode) -> event
        self.acting, self.feeding = False, True  # feeding: frames go to the core (not while marking)
        self.steps, self.acted, self.started = 0, -1, 0.0
        self.sim_episode: int | None = None
        self.end_stamp: int | None = None
        self.end_event: EpisodeEvent | None = None
        self.reported: Ended | None = None  # how the episode ended, for the session's next poll
        self.last_saved: Path | None = None
        subscribe_streams(self.node, observed, self.recorder_config, self.on_message)  # waits for the graph
        time.sleep(DISCOVERY_S)
        if self.node.count_publishers("/clock") > 0:  # a lockstep sim graph: its stamps are sim time
            self.node.set_parameters([Parameter("use_sim_time", value=True)])
        self.actions = self.node.create_publisher(Float32MultiArray, "action", command_qos())
        self.event_out = None
        if ros.reset_service:
            self.reset = self.node.create_client(Trigger, ros.reset_service)
            self.node.create_subscription(String, "episode_events", self.on_event, latched_qos(depth=10))
        else:
            self.event_out = self.node.create_publisher(String, "episode_events", latched_qos(depth=10))
        if self.joy_teleop is not None:
            self.node.create_subscription(Joy, ros.joy_topic, self.on_joy, sensor_qos())
        if self.leader_teleop is not None:
            self.node.create_subscription(JointState, ros.leader_topic, self.on_leader, sensor_qos())
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # sim time stands still until we act
        self.node.create_timer(1.0 / ros.control_hz, self.on_tick, clock=steady)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, name="ros", daemon=True)
        self.spinner.start()
        if ros.reset_service and not self.reset.wait_for_service(timeout_sec=ros.startup_timeout):
            self.close()
            raise RecordingError(
                f"no {ros.reset_service} service: start the sim robot (aps-launch record robot:=sim), "
                "or on a real robot set ros.reset_service="
            )

    # --- callbacks (the ROS thread) -------------------------------------------------------------
    def on_message(self, topic: str, msg: object) -> None:
        try:
            decoded = self.decoder.decode(topic, msg)
        except MessageError as err:
            self.node.get_logger().warning(f"{topic}: {err}", throttle_duration_sec=1.0)
            return
        with self.lock:
            self.newest[topic] = max(self.newest.get(topic, 0), decoded.stamp_ns)
            self.data_clock.heard(decoded.stamp_ns, self.node.get_clock().now().nanoseconds)
            if isinstance(msg, JointState):
                self.follower = decoded.arrays["joints"][: len(self.config.joints.arm)]
            if self.feeding:
                self.add(topic, decoded.stamp_ns, decoded.arrays)

    def add(self, topic: str, stamp_ns: int, arrays: dict[str, np.ndarray]) -> None:
        add_to_core(self.core, self.node, topic, stamp_ns, arrays)

    def on_event(self, msg: String) -> None:
        keep_event(self.events, self.lock, msg)

    def on_joy(self, msg: Joy) -> None:
        self.joy = (list(msg.axes), list(msg.buttons))

    def on_leader(self, msg: JointState) -> None:
        self.leader = dict(zip(msg.name, msg.position, strict=False))

    def on_tick(self) -> None:
        """At the control rate: one action for the newest complete observation, and the stale check."""
        with self.lock:
            if not self.acting:
                return
            event = self.events.get(("end", self.sim_episode)) if self.sim_episode is not None else None
            if event is not None:  # the sim ended it (success, step limit): not one more action
                self.acting, self.end_event = False, event
                self.reported = Ended(event.success, "ended by the sim")
                return
            stamp = self.observation_stamp()
            episode = self.core.queued_start or self.core.episode
            if stamp is not None and episode is not None and stamp > max(self.acted, episode.start_ns - 1):
                action = self.action()
                if action is not None:
                    self.actions.publish(vectors_to_msg({"action": action}, stamp))
                    self.add(self.recorder_config.step_stream, stamp, {"action": action})
                    self.acted, self.steps = stamp, self.steps + 1
            now = self.data_clock.now(self.node.get_clock().now().nanoseconds)
            if now is not None:
                self.core.poll(now)
            if not self.core.recording:  # the recorder closed it: a device lost, the disk filling up
                self.acting = False
                self.reported = self.closed()

    def observation_stamp(self) -> int | None:
        """The newest stamp every observation stream has reached."""
        observed = [t for t in self.decoder.kinds if t != self.recorder_config.step_stream]
        return min(self.newest[t] for t in observed) if all(t in self.newest for t in observed) else None

    def action(self) -> np.ndarray | None:
        if self.teleop is not None:
            return self.teleop.action(time.monotonic())
        if self.joy_teleop is not None:
            if self.joy is None:
                self.node.get_logger().warning(
                    f"no message on {self.config.joy_topic} yet", throttle_duration_sec=2
                )
                return None
            return self.joy_teleop.action(*self.joy)
        assert self.leader_teleop is not None
        if self.leader is None or self.follower is None:
            self.node.get_logger().warning(f"waiting for {self.config.leader_topic}", throttle_duration_sec=2)
            return None
        try:
            return self.leader_teleop.action(self.leader, self.follower)
        except ValueError as err:
            self.node.get_logger().warning(str(err), throttle_duration_sec=2.0)
            return None

    def closed(self) -> Ended:
        records = self.core.drain_records()
        self.publish_events()
        record = records[-1]
        if record.path is not None:
            self.last_saved = record.path
        return Ended(record.success, f"was cut short ({record.reason})", closed=True, saved=record.path)

    def publish_events(self) -> None:
        for event in self.core.drain_events():
            if self.event_out is not None:
                self.event_out.publish(event.to_msg())

    # --- the session's side (the main thread) ------------------------------------------------------
    def stats(self) -> BackendStats:
        with self.lock:
            episode = self.core.episode
            sync = episode.sync if episode is not None else None
        dropped = 0 if sync is None else sync.dropped_steps + sync.out_of_tolerance + sync.repeated
        elapsed = time.monotonic() - self.started
        fps = self.steps / elapsed if self.acting and elapsed > 0 else 0.0
        return BackendStats(self.steps, fps, self.config.control_hz, dropped)

    def begin(self, rerecord: bool) -> None:
        """A new episode: the sim robot's reset (a new scene each time), or now on a real robot."""
        if self.teleop is not None:
            self.teleop.reset()
        # an action sent before the robot interface listens is lost, and a lockstep sim would wait on it
        self.wait_for(
            lambda: self.actions.get_subscription_count() or None,
            "a reader of `action` (aps-robot-interface)",
        )
        seed, stamp = -1, None
        if self.config.reset_service:
            episode, seed = self.call_reset()
            start = self.wait_for(lambda: self.events.get(("start", episode)), "its start event")
            self.sim_episode, stamp = episode, start.stamp_ns
        with self.lock:
            now = self.node.get_clock().now().nanoseconds
            self.core.start(stamp if stamp is not None else now, seed, attrs={"teleop": self.source})
            self.publish_events()
            self.acting = True
            self.steps, self.started = 0, time.monotonic()
            self.end_stamp = self.end_event = self.reported = None

    def call_reset(self) -> tuple[int, int]:
        return call_sim_reset(self.reset, self.wait_for, self.config.startup_timeout, RecordingError)

    def wait_for(self, ready: Callable[[], T | None], what: str) -> T:
        limit = self.config.startup_timeout
        return wait_until(
            ready, limit, lambda: RecordingError(f"no answer from the robot graph for {what} in {limit:g} s")
        )

    def poll(self, now: float) -> Ended | None:
        with self.lock:
            ended, self.reported = self.reported, None
        return ended

    def finish(self) -> bool | None:
        """Stop acting; the episode ends at its newest observation acted on (or the sim's end), once
        its frames are in. The recording then pauses, so they stay at hand while the operator marks."""
        with self.lock:
            self.acting = False
            self.end_stamp = self.end_event.stamp_ns if self.end_event is not None else self.acted
        if self.core.recording:
            observed = [t for t in self.decoder.kinds if t != self.recorder_config.step_stream]
            deadline = time.monotonic() + self.config.stale_after
            while (
                time.monotonic() < deadline and min(self.newest.get(t, 0) for t in observed) < self.end_stamp
            ):
                time.sleep(0.005)
        with self.lock:
            self.feeding = False
        return self.end_event.success if self.end_event is not None else None

    def save(self, success: bool) -> Path:
        with self.lock:
            self.core.end(self.end_stamp, success=success)  # a success is terminal, else truncated
            self.publish_events()
            self.feeding = True
            self.last_saved = saved_path(self.core)
        return self.last_saved

    def discard(self) -> None:
        with self.lock:
            self.acting, self.feeding = False, True
            if self.core.recording:
                self.core.discard()
                self.core.drain_records()
                self.publish_events()

    def undo(self) -> Path:
        assert self.last_saved is not None
        path, self.last_saved = self.last_saved, None
        return self.core.dataset.remove(path)

    def wait(self, now: float) -> float:
        return 0.05  # the ROS thread acts; the main loop only reads keys and redraws

    def close(self) -> None:
        with self.lock:
            self.acting = False
            self.core.close()  # an episode in progress is kept, marked
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()
