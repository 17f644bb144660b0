"""aps-eval's robot side over ROS 2: the eval graph (robot_nodes/graphs.py) driven trial by trial, each
trial's episode recorded in this process through the recorder core, from the same topics the
recorder node reads (aps-record does the same).

    robot (or sim robot) --frames--> policy_0, policy_1, ... --policy_<i>/action--> action_mux
    action_mux --action--> robot_interface --commands--> robot;  aps-eval: ~/select, reset, estop

A trial: the e-stop this session engaged is released; the mux is switched to the trial's policy
(and waited for: it echoes the selection on action_mux/selected); the sim robot resets to the
trial's seed (its `next_seed` parameter, then its reset service), or on a real robot this node
publishes the episode's start on `episode_events`; the episode is recorded from its first
observation. It ends when the sim ends it (a success, or its step limit), the privileged success
check fires (the recorder core's reward function on a robot), the e-stop is engaged (a `true` on
`estop` from anyone), a stream falls silent, or the session ends it; then the mux forwards nothing,
so the robot interface holds the arm, and the episode closes at the newest observation acted on
once the label is known. Time is the graph's: the sim's /clock in a lockstep sim graph.

ROS callbacks run on a thread of their own, the keys and screen on the main one; one lock guards
the recorder core and the trial's state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from policies.episodes import EpisodeFile
from robot_nodes.entry import StartupError
from robot_nodes.episode_video import write_episode_video
from robot_nodes.eval_plan import Plan, PlannedTrial, PolicyEntry
from robot_nodes.eval_records import SessionFolder
from robot_nodes.eval_session import Ending, EvalError, SavedTrial, TrialFacts, TrialStats
from robot_nodes.graph_client import add_to_core, call_sim_reset, keep_event, wait_until
from robot_nodes.messages import EpisodeEvent, MessageError
from robot_nodes.qos import command_qos, latched_qos
from robot_nodes.recorder_core import EpisodeRecord, RecorderCore
from robot_nodes.recorder_node import subscribe_streams
from robot_nodes.recorder_streams import RecorderNodeConfig, StreamDecoder

NS = 1_000_000_000
HEARTBEAT_HZ = 4.0  # renewals of the mux selection (its lease is seconds)
DISCOVERY_S = 1.0  # time for /clock and the graph's publishers to be discovered
T = TypeVar("T")


class EvalGraphError(EvalError):
    """The eval graph cannot run the session (a node missing, a topic silent); the text names the fix."""


class RosEvalBackend:
    def __init__(
        self,
        recorder: RecorderNodeConfig,
        plan: Plan,
        folder: SessionFolder,
        *,
        mux: str,
        reset_service: str,
        sight_key: tuple[str, int] | None,
        gripper: bool,
        video_height: int,
        startup_timeout: float,
        graph_alive: Callable[[], str],
    ) -> None:
        self.recorder_config, self.plan, self.folder = recorder, plan, folder
        self.reset_service, self.sight_key, self.gripper = reset_service, sight_key, gripper
        self.video_height = video_height  # 0: no video
        self.startup_timeout, self.graph_alive = startup_timeout, graph_alive
        self.core = RecorderCore(recorder)  # storage is checked before anything moves
        self.lock = threading.Lock()
        self.decoder = StreamDecoder(recorder)
        self.step_stream = recorder.step_stream
        self.observed = [t for t in self.decoder.kinds if t != self.step_stream]
        self.newest: dict[str, int] = {}  # stream -> newest stamp
        self.events: dict[tuple[str, int], EpisodeEvent] = {}  # the sim's (kind, episode) -> event
        self.selected: str | None = None  # what the mux says it forwards
        self.wanted = ""  # what this session asks the mux to forward (renewed by the heartbeat)
        self.estop_engaged = False
        self.own_estop = False  # engaged by this session (so it may release it)
        self.feeding = True  # frames go to the core (not while a finished trial waits for its label)
        self.trial: PlannedTrial | None = None  # the trial whose episode is being recorded
        self.tracking = False  # messages count towards the trial's facts (from begin to stop_acting)
        self.tracking_from = 0  # ... when stamped at or after this
        self.start_ns = 0
        self.sim_episode: int | None = None
        self.acted = -1  # stamp of the newest action forwarded in this trial
        self.steps = 0
        self.version: int | None = None
        self.seen_ns: int | None = None  # first stamp the privileged data showed the object
        self.sight_values = False  # the privileged stream carried the sight key in this trial
        self.grasped = False
        self.end_stamp = 0
        self.ending: Ending | None = None
        self.closed: EpisodeRecord | None = None  # the recorder closed the trial's episode itself
        self.wall_started = 0.0
        rclpy.init()
        self.node = rclpy.create_node("aps_eval")
        try:
            self._wire(mux)
        except BaseException:
            self.close()
            raise

    # --- set-up: every topic, node and service the session needs, or a clear error ---------------
    def _wire(self, mux: str) -> None:
        node = self.node
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self.spinner = threading.Thread(target=self.executor.spin, name="ros", daemon=True)
        self.spinner.start()
        self._wait_for_policies_and_mux(mux)
        try:
            subscribe_streams(node, self.decoder.kinds, self.recorder_config, self.on_message)
        except StartupError as err:
            raise EvalGraphError(f"{err}{self.graph_alive()}") from err
        time.sleep(DISCOVERY_S)
        if node.count_publishers("/clock") > 0:  # a lockstep sim graph: its stamps are sim time
            node.set_parameters([Parameter("use_sim_time", value=True)])
        self.select_out = node.create_publisher(String, f"{mux}/select", command_qos())
        node.create_subscription(String, f"{mux}/selected", self.on_selected, latched_qos())
        node.create_subscription(String, "episode_events", self.on_event, latched_qos(depth=10))
        node.create_subscription(Bool, "estop", self.on_estop, latched_qos())
        self.estop_out = node.create_publisher(Bool, "estop", latched_qos())
        self.events_out = None if self.reset_service else node.create_publisher(
            String, "episode_events", latched_qos(depth=10)
        )  # fmt: skip
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # sim time stands still between trials
        node.create_timer(1.0 / HEARTBEAT_HZ, self.on_heartbeat, clock=steady)
        node.create_timer(1.0 / self.recorder_config.control_hz, self.on_tick, clock=steady)
        if self.reset_service:
            self.reset = node.create_client(Trigger, self.reset_service)
            robot = self.reset_service.rsplit("/", 1)[0]
            self.robot_parameters = AsyncParameterClient(node, robot)
            if not self.reset.wait_for_service(timeout_sec=self.startup_timeout):
                raise EvalGraphError(
                    f"no {self.reset_service} service after {self.startup_timeout:g} s: start the sim robot "
                    f"(aps-eval launches it with launch=true), or on a real robot set reset_service=''"
                    f"{self.graph_alive()}"
                )
        self._select("", "the mux")

    def _wait_for_policies_and_mux(self, mux: str) -> None:
        """Each policy's node publishes its actions (it starts only once it has every onboard topic it
        needs) and the mux runs; else the error names the policies that did not come up."""
        deadline = time.monotonic() + self.startup_timeout
        needed = {f"{p.node}/action": p for p in self.plan.policies} | {f"{mux}/selected": None}
        while missing := [t for t in needed if self.node.count_publishers(t) == 0]:
            if time.monotonic() > deadline:
                policies = [needed[t] for t in missing if needed[t] is not None]
                what = [
                    f"policy {p.label} ({p.node}, {p.checkpoint}: reads cameras {sorted(p.cameras)})"
                    for p in policies
                ]
                if f"{mux}/selected" in missing:
                    what.append(f"the action mux ({mux})")
                raise EvalGraphError(
                    f"not running after {self.startup_timeout:g} s: {'; '.join(what)}. A policy node exits "
                    "when a topic it needs has no publisher (a camera the robot does not have) or its "
                    f"checkpoint is for another task{self.graph_alive()}"
                )
            time.sleep(0.05)

    # --- callbacks (the ROS thread) ---------------------------------------------------------------
    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def on_message(self, topic: str, msg: object) -> None:
        try:
            decoded = self.decoder.decode(topic, msg)
        except MessageError as err:
            self.node.get_logger().warning(f"{topic}: {err}", throttle_duration_sec=1.0)
            return
        with self.lock:
            stamp = decoded.stamp_ns
            self.newest[topic] = max(self.newest.get(topic, 0), stamp)
            in_trial = self.tracking and stamp >= self.tracking_from
            if topic == self.step_stream and in_trial:
                self.acted, self.steps = max(self.acted, stamp), self.steps + 1
                self.grasped |= self.gripper and float(decoded.arrays["action"][-1]) > 0.0
                if decoded.policy_version is not None:
                    self.version = decoded.policy_version
            elif self.sight_key is not None and in_trial and self.sight_key[0] in decoded.arrays:
                self.sight_values = True
                if self.seen_ns is None and decoded.arrays[self.sight_key[0]][self.sight_key[1]] > 0.5:
                    self.seen_ns = stamp
            if self.feeding:
                add_to_core(self.core, self.node, topic, stamp, decoded.arrays, decoded.policy_version)

    def on_event(self, msg: String) -> None:
        keep_event(self.events, self.lock, msg)

    def on_selected(self, msg: String) -> None:
        with self.lock:
            self.selected = msg.data

    def on_estop(self, msg: Bool) -> None:
        with self.lock:
            self.estop_engaged = bool(msg.data)
            if not msg.data:
                self.own_estop = False

    def on_heartbeat(self) -> None:
        self.select_out.publish(String(data=self.wanted))

    def on_tick(self) -> None:
        """At the control rate: how the running trial may have ended on the robot's side."""
        with self.lock:
            if self.trial is None or self.ending is not None:
                return
            event = self.events.get(("end", self.sim_episode)) if self.sim_episode is not None else None
            if event is not None:
                self.end_stamp = event.stamp_ns
                self.ending = Ending(
                    "task" if event.success or not event.truncated else "step_limit", event.success
                )
            elif self.estop_engaged:
                self.ending = Ending("estop")
            else:
                self.core.poll(self.now_ns())
                outcome = self.core.last_outcome()
                if not self.core.recording:
                    records = self.core.drain_records()
                    self.closed = records[-1] if records else None
                    self.ending = Ending("device_lost", why=self.closed.reason if self.closed else "")
                elif outcome is not None and outcome.success and self.recorder_config.reward != "label":
                    self.ending = Ending("task", True)

    # --- the session's side (the main thread) ---------------------------------------------------
    def begin(self, trial: PlannedTrial, policy: PolicyEntry) -> None:
        if self.own_estop:
            self.estop_out.publish(Bool(data=False))
            self._wait_for(lambda: True if not self.estop_engaged else None, "the e-stop's release")
        with self.lock:
            # what comes from now on is this trial's: the sim's new episode is stamped after everything
            # before it (its time only moves on); a robot's episode starts now
            newest = max(self.newest.values(), default=0) + 1
            self.tracking_from = newest if self.reset_service else self.now_ns()
            self.ending, self.sim_episode, self.closed = None, None, None
            self.acted, self.steps, self.version, self.seen_ns, self.sight_values, self.grasped = (
                -1, 0, None, None, False, False,
            )  # fmt: skip
            self.tracking = True
        self._select(f"{policy.node}/action", f"policy {policy.label}")
        seed, stamp = trial.seed, None
        if self.reset_service:
            episode = self._reset(trial.seed)
            start = self._wait_for(lambda: self.events.get(("start", episode)), "the sim's start event")
            stamp = start.stamp_ns
        with self.lock:
            self.start_ns = stamp if stamp is not None else self.tracking_from
            self.sim_episode = episode if self.reset_service else None
            attrs = {"trial": trial.index, "label": trial.label, "policy": policy.name,
                     "checkpoint_sha256": policy.digest, "condition": trial.condition}  # fmt: skip
            self.core.start(self.start_ns, seed, attrs=attrs)
            self._publish_events()
            self.wall_started = time.monotonic()
            self.trial = trial  # on_tick watches its end from now on

    def _reset(self, seed: int) -> int:
        future = self.robot_parameters.set_parameters([Parameter("next_seed", value=seed)])
        self._wait_for(lambda: future.result() if future.done() else None, "the sim robot's next_seed")
        episode, reset_seed = call_sim_reset(self.reset, self._wait_for, self.startup_timeout, EvalGraphError)
        if reset_seed != seed:
            raise EvalGraphError(f"the sim robot reset to seed {reset_seed}, not the trial's {seed}")
        return episode

    def _select(self, source: str, what: str) -> None:
        self.wanted = source
        self.select_out.publish(String(data=source))
        self._wait_for(
            lambda: True if self.selected == source else None, f"the action mux to switch to {what}"
        )

    def _wait_for(self, ready: Callable[[], T | None], what: str) -> T:
        def timed_out() -> EvalGraphError:
            limit = f"{self.startup_timeout:g} s"
            return EvalGraphError(f"no answer from the eval graph for {what} in {limit}{self.graph_alive()}")

        return wait_until(ready, self.startup_timeout, timed_out)

    def poll(self) -> Ending | None:
        with self.lock:
            return self.ending

    def stats(self) -> TrialStats:
        with self.lock:
            newest = min((self.newest.get(t, 0) for t in self.observed), default=0)
            elapsed = max(0.0, (newest - self.start_ns) / NS) if self.trial is not None else 0.0
            wall = time.monotonic() - self.wall_started
            return TrialStats(self.steps, self.steps / wall if wall > 0 else 0.0, elapsed)

    def engage_estop(self) -> None:
        self.own_estop = True
        self.estop_out.publish(Bool(data=True))

    def blocked(self) -> str:
        with self.lock:
            if self.estop_engaged and not self.own_estop:
                return "the e-stop is engaged: release it (publish false on estop) to go on"
        return ""

    def stop_acting(self) -> TrialFacts:
        """The mux forwards nothing (the arm holds); the episode ends at the sim's end, or at the newest
        observation acted on, once its frames are in; then the recording pauses while it is labelled."""
        self._select("", "nothing")
        with self.lock:
            ending = self.ending or Ending("operator")
            self.ending = ending
            if ending.reason not in ("task", "step_limit") or self.sim_episode is None:
                self.end_stamp = self.acted if self.acted >= 0 else self.start_ns
            end = self.end_stamp
        deadline = time.monotonic() + self.recorder_config.stale_after
        while time.monotonic() < deadline and min(self.newest.get(t, 0) for t in self.observed) < end:
            time.sleep(0.005)
        with self.lock:
            self.feeding, self.tracking = False, False
            outcome = self.core.last_outcome()
            success = ending.success
            if success is None and outcome is not None and self.recorder_config.reward != "label":
                success = outcome.success
            seen = None if self.sight_key is None or not self.sight_values else self.seen_ns is not None
            return TrialFacts(success, seen, self.grasped if self.gripper else None)

    def save(self, trial: PlannedTrial, success: bool) -> SavedTrial:
        with self.lock:
            if not self.core.recording:  # closed already: a stream fell silent
                record = self.closed
            else:
                self.core.end(self.end_stamp, success=success)
                record = self.core.drain_records()[-1]
            self._publish_events()
            self.feeding, self.trial = True, None
            first_sight = None if self.seen_ns is None else (self.seen_ns - self.start_ns) / NS
            version = self.version
        policy = self.plan.policy(trial.label)
        version = version if version is not None else policy.version
        if record is None or record.path is None:  # nothing recorded (no step yet): the log says so
            return SavedTrial("", "", 0.0, 0, None, version)
        episode = EpisodeFile(record.path)
        video = ""
        if self.video_height:
            video_path = self.folder.video_path(trial)
            write_episode_video(episode.load(), video_path, height=self.video_height)
            video = self.folder.relative(video_path)
        duration = float(episode.window(len(episode), len(episode)).timestamp[0])
        return SavedTrial(
            self.folder.relative(record.path), video, duration, len(episode), first_sight, version
        )

    def discard(self) -> None:
        self._select("", "nothing")
        with self.lock:
            if self.core.recording:
                self.core.discard()
                self.core.drain_records()
            self._publish_events()
            self.feeding, self.trial, self.ending, self.tracking = True, None, None, False

    def _publish_events(self) -> None:
        for event in self.core.drain_events():
            if self.events_out is not None:  # a real robot: this session's episodes are the graph's
                self.events_out.publish(event.to_msg())

    def close(self) -> None:
        if getattr(self, "select_out", None) is not None:
            self.wanted = ""
            self.select_out.publish(String(data=""))
        with self.lock:
            if self.core.recording:  # an unfinished trial is not kept: it runs again on resume
                self.core.discard()
            self._publish_events()
        if getattr(self, "executor", None) is not None:
            self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def sight_frame(text: str) -> tuple[str, int] | None:
    """`key` or `key:index` of the privileged vector that shows the object in view."""
    if not text:
        return None
    key, _, index = text.partition(":")
    return key, int(index or 0)
