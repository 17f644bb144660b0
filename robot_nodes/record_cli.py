"""aps-record: record demonstrations, with keys as LeRobot users know them and progress on screen.

    # in the sim, no ROS: drive the arm from the keyboard (w/s a/d r/f q/e, space: gripper)
    aps-record task=search-pick dataset=data/demos session.num_episodes=20
    # the scripted expert in the sim, labelled by the sim, at full speed
    aps-record source=scripted realtime=false session.auto_mark=true session.reset_time_s=0
    # live over ROS 2, against the sim robot graph or the robot (aps-launch record robot:=sim|real):
    aps-record mode=ros source=keyboard dataset=data/demos
    aps-record mode=ros source=joy      # a space mouse (spacenav_node) or a gamepad on `joy`
    aps-record mode=ros source=leader   # a leader arm's joint_states on `leader/joint_states`

Keys: -> (or n) ends an episode, then s / f marks it a success or a failure (Enter takes what the
sim or the privileged sensors report); <- (or b) discards it and records it again; Esc (or x) saves
it and stops. Between episodes a reset phase leaves time to put the scene back. The keys are read
from this terminal (over SSH too); `aps-record --help` lists every setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.live import Live

import sim
from apsconfig import ConfigError, config_help, load_config
from policies.episodes import EpisodeDataset, EpisodeFormatError
from robot_nodes.messages import outcome_vectors
from robot_nodes.policy_core import JointsLayout
from robot_nodes.record_display import render
from robot_nodes.record_session import BackendStats, Ended, RecordSession, SessionConfig
from robot_nodes.recorder_core import RecorderConfig, RecorderCore, RecorderError, RewardSource
from robot_nodes.teleop import (
    ActionLayout,
    JoyConfig,
    KeyboardConfig,
    KeyboardTeleop,
    LeaderConfig,
    TerminalKeys,
)
from sim.base import ArmEnv
from sim.config import DemoConfig, TaskConfig
from sim.seeds import demo_seed

Source = Literal["keyboard", "scripted", "joy", "leader"]
SIM_SOURCES = ("keyboard", "scripted")
REFRESH_S = 0.1  # screen updates at most this often
NS = 1_000_000_000


@dataclass
class RosRecordConfig:
    """Recording live over ROS 2 (mode ros): what to record, and where the teleoperation comes from."""

    onboard_streams: list[str] = field(default_factory=lambda: ["wrist/color/image_raw", "joint_states"])
    privileged_streams: list[str] = field(default_factory=lambda: ["privileged_state"])
    # task: the task's function on privileged data; label: sparse, from the success mark; stream: the
    # sim's reward beside the privileged state (see robot_nodes/recorder_core.py)
    reward: RewardSource = "label"
    control_hz: float = 10.0  # actions per second (the episode's fps)
    sync_tolerance: float = 0.02  # seconds: a frame further from its step counts as out of tolerance
    stale_after: float = 1.0  # seconds a stream may stay silent in an episode before it ends, marked
    joints: JointsLayout = field(default_factory=JointsLayout)
    # the sim robot's reset (std_srvs/Trigger): each episode starts with a new scene; empty: a real
    # robot, where the operator resets the scene in the reset phase
    reset_service: str = "sim_robot/reset"
    joy_topic: str = "joy"  # sensor_msgs/Joy of a space mouse (spacenav_node) or a gamepad (source joy)
    leader_topic: str = "leader/joint_states"  # the leader arm's joint states (source leader)
    follower_urdf: str = ""  # the follower arm's URDF, for its end-effector pose (empty: the sim arm's)
    startup_timeout: float = 10.0  # seconds to wait for the robot's topics


@dataclass
class RecordConfig:
    mode: Literal["sim", "ros"] = (
        "sim"  # sim: MuJoCo in this process, no ROS; ros: the robot (or sim robot) graph
    )
    task: str = "search-pick"  # one of sim.TASK_NAMES (on a robot: the sim task it mirrors)
    source: Source = (
        "keyboard"  # who acts: keys, the sim's scripted expert, a joystick/space mouse, a leader arm
    )
    dataset: str = "data/demos"  # folder the episodes are added to (made if missing; existing episodes stay)
    session: SessionConfig = field(default_factory=SessionConfig)
    seed: int = 0  # sim: episode i is set up from demo seed (seed, i), i counting the dataset's episodes
    realtime: bool = True  # sim: step at the control rate (a person needs it); false: as fast as it goes
    min_free_space_mb: float = 500.0  # refuse to start (or end an episode) with less free disk space
    env: TaskConfig = field(default_factory=TaskConfig)  # the sim task's settings (mode sim)
    demo: DemoConfig = field(default_factory=DemoConfig)  # the scripted expert's imperfections
    keyboard: KeyboardConfig = field(default_factory=KeyboardConfig)
    joy: JoyConfig = field(default_factory=JoyConfig)
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    ros: RosRecordConfig = field(default_factory=RosRecordConfig)

    def __post_init__(self) -> None:
        if self.task not in sim.TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(sim.TASK_NAMES)}")
        if self.mode == "sim" and self.source not in SIM_SOURCES:
            raise ValueError(
                f"source {self.source} comes over ROS: use mode=ros (in the sim: source=keyboard or scripted)"
            )
        if self.mode == "ros" and self.source == "scripted":
            raise ValueError("the scripted expert reads the sim's state: use mode=sim for source=scripted")

    @property
    def episode_source(self) -> Literal["demo", "scripted"]:
        return "scripted" if self.source == "scripted" else "demo"


class RecordingError(RuntimeError):
    """Recording cannot start or go on; the text names the fix."""


def action_layout(task: str) -> ActionLayout:
    env = sim.make(task, TaskConfig(image_size=16))
    try:
        if not isinstance(env, ArmEnv):
            raise RecordingError("teleoperation drives arm tasks; for tmaze use source=scripted")
        return ActionLayout(tuple(env.ee_axes), env.has_gripper)
    finally:
        env.close()


def delete_episode(dataset: EpisodeDataset, path: Path) -> Path:
    """Remove an episode the operator took back (<- in the reset phase), and its manifest entry."""
    path.unlink()
    dataset.write_manifest()
    return path


def saved_path(core: RecorderCore) -> Path:
    """The file of the episode the core has just closed, or the reason it has none."""
    records = core.drain_records()
    core.drain_events()
    if not records or records[-1].path is None:
        why = records[-1].reason if records else "the recorder did not close it"
        raise RecordingError(f"the episode was not saved: {why}")
    return records[-1].path


class SimBackend:
    """Episodes in MuJoCo in this process, written through the recorder core as the robot graph's are:
    the sim's observations are the streams (stamped in sim time, one control period a step), the
    action the step stream, and the sim's own reward and success ride beside the privileged state."""

    def __init__(self, config: RecordConfig) -> None:
        self.config = config
        self.env = sim.make(config.task, config.env)
        self.fps = float(self.env.control_hz)
        self.core = RecorderCore(
            RecorderConfig(
                dataset=config.dataset, task=config.task, robot=getattr(self.env, "robot_name", "sim"),
                source=config.episode_source, control_hz=self.fps, onboard_streams=["onboard"],
                privileged_streams=["privileged"], reward="stream",
                min_free_space_mb=config.min_free_space_mb,
            )
        )  # fmt: skip
        self.teleop = (
            KeyboardTeleop(action_layout(config.task), config.keyboard)
            if config.source == "keyboard"
            else None
        )
        self.next_index = len(self.core.dataset)
        self.last_saved: Path | None = None
        self.period_ns = round(NS / self.fps)
        self.stamp = 0  # sim time, rising across episodes as the core needs
        self.seed = 0
        self.steps = 0
        self.done = True
        self.started = self.next_due = 0.0

    def stats(self) -> BackendStats:
        elapsed = time.monotonic() - self.started
        fps = self.steps / elapsed if not self.done and elapsed > 0 else 0.0
        return BackendStats(self.steps, fps, self.fps, 0)

    def begin(self, rerecord: bool) -> None:
        if not rerecord:
            self.seed = demo_seed(self.config.seed, self.next_index)
            self.next_index += 1
        self.obs, _ = self.env.reset(seed=self.seed)
        self.expert = None
        if self.config.source == "scripted":
            self.expert = sim.make_demonstrator(self.env, self.config.demo, self.seed)
            self.expert.reset()
        if self.teleop is not None:
            self.teleop.reset()
        self.stamp += self.period_ns
        self.core.start(self.stamp, self.seed, attrs={"teleop": self.config.source})
        self._observe(0.0, False)
        self.steps, self.success, self.done = 0, False, False
        self.started = self.next_due = time.monotonic()

    def _observe(self, reward: float, success: bool) -> None:
        self.core.add("onboard", self.stamp, self.obs["onboard"])
        self.core.add(
            "privileged", self.stamp, {**self.obs["privileged"], **outcome_vectors(reward, success)}
        )

    def wait(self, now: float) -> float:
        """Seconds until the next step is due (0: now)."""
        return max(0.0, self.next_due - now) if self.config.realtime else 0.0

    def poll(self, now: float) -> Ended | None:
        """One control step when it is due; the sim's success once the task has ended the episode."""
        if self.done or (self.config.realtime and now < self.next_due):
            return None
        self.next_due = max(self.next_due + 1.0 / self.fps, now)  # behind (a slow render): no burst
        action = self.teleop.action(now) if self.teleop is not None else self.expert.act(self.obs)
        self.core.add("action", self.stamp, {"action": action})
        self.obs, reward, terminated, truncated, info = self.env.step(action)
        self.stamp += self.period_ns
        self.success |= bool(info["success"])
        self._observe(reward, bool(info["success"]))
        self.steps += 1
        self.done = bool(terminated or truncated)
        return Ended(self.success, "ended by the task") if self.done else None

    def finish(self) -> bool | None:
        self.done = True
        return self.success

    def save(self, success: bool) -> Path:
        self.core.end(self.stamp, success=success)  # a success is terminal, else truncated
        self.last_saved = saved_path(self.core)
        return self.last_saved

    def discard(self) -> None:
        if self.core.recording:
            self.core.discard()
            self.core.drain_records()
            self.core.drain_events()
        self.steps = 0

    def undo(self) -> Path:
        assert self.last_saved is not None
        path, self.last_saved = self.last_saved, None
        return delete_episode(self.core.dataset, path)

    def close(self) -> None:
        self.discard()
        self.env.close()


def run(config: RecordConfig, console: Console | None = None) -> RecordSession:
    """Record until the session ends; returns it (its tally)."""
    console = console or Console()
    backend = SimBackend(config) if config.mode == "sim" else _ros_backend(config)
    teleop = backend.teleop
    interactive = os.isatty(sys.stdin.fileno())
    if not interactive and (config.source == "keyboard" or not config.session.auto_mark):
        backend.close()
        raise RecordingError(
            "keys are read from a terminal: run aps-record in one (or source=scripted with "
            "session.auto_mark=true and no keys)"
        )
    keys = TerminalKeys(sys.stdin.fileno()) if interactive else None
    title = f"aps-record  {config.task}  {config.source}  -> {config.dataset}"
    help_line = teleop.help() if teleop is not None else ""
    session: RecordSession | None = None
    try:
        with keys or nullcontext(), Live(console=console, auto_refresh=False, transient=False) as live:
            session = RecordSession(config.session, backend, time.monotonic())
            shown = 0.0
            while session.phase != "done":
                now = time.monotonic()
                pressed = keys.read(min(backend.wait(now), REFRESH_S)) if keys is not None else []
                now = time.monotonic()
                for key in pressed:
                    if session.phase == "recording" and teleop is not None and teleop.handles(key):
                        teleop.press(key, now)
                        continue
                    phase = session.phase
                    session.key(key, now)
                    if session.phase != phase and keys is not None:
                        keys.flush()
                if session.phase == "recording" and (ended := backend.poll(now)) is not None:
                    session.ended(ended, now)
                session.tick(now)
                if now - shown >= REFRESH_S or session.phase == "done":
                    live.update(render(session, backend.stats(), now, title, help_line), refresh=True)
                    shown = now
    except KeyboardInterrupt:
        if session is None:
            raise
        session.key("ctrl-c", time.monotonic())
    finally:
        backend.close()
    assert session is not None
    console.print(session.message)
    return session


def _ros_backend(config: RecordConfig):
    from robot_nodes.record_ros import RosBackend  # rclpy: only when recording over ROS

    return RosBackend(config)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="aps-record",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1] + "\nsettings:\n" + config_help(RecordConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="a YAML file of settings (RecordConfig)")
    parser.add_argument(
        "overrides", nargs="*", help="key=value settings, e.g. task=search-pick source=scripted"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        config = load_config(RecordConfig, args.config, args.overrides)
        run(config)
    except (ConfigError, ValueError, RecordingError, RecorderError, EpisodeFormatError, OSError) as err:
        print(f"aps-record: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
