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
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rich.console import Console
from rich.live import Live

import sim
from apsconfig import ConfigError, config_help, load_config
from policies.episodes import EpisodeDataset, EpisodeFormatError, EpisodeWriter
from robot_nodes.record_display import render
from robot_nodes.record_session import BackendStats, RecordSession, SessionConfig
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
    min_free_mb: float = 500.0  # refuse to start with less free disk space in the dataset's folder
    env: TaskConfig = field(default_factory=TaskConfig)  # the sim task's settings (mode sim)
    demo: DemoConfig = field(default_factory=DemoConfig)  # the scripted expert's imperfections
    keyboard: KeyboardConfig = field(default_factory=KeyboardConfig)
    joy: JoyConfig = field(default_factory=JoyConfig)
    leader: LeaderConfig = field(default_factory=LeaderConfig)

    def __post_init__(self) -> None:
        if self.task not in sim.TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(sim.TASK_NAMES)}")
        if self.mode == "sim" and self.source not in SIM_SOURCES:
            raise ValueError(
                f"source {self.source} comes over ROS: use mode=ros (in the sim: source=keyboard or scripted)"
            )
        if self.mode == "ros" and self.source == "scripted":
            raise ValueError("the scripted expert reads the sim's state: use mode=sim for source=scripted")
        if self.min_free_mb < 0:
            raise ValueError(f"min_free_mb must be >= 0, got {self.min_free_mb}")


class RecordingError(RuntimeError):
    """Recording cannot start or go on; the text names the fix."""


def check_dataset_folder(folder: Path, min_free_mb: float) -> None:
    """Before anything is recorded: the folder can be written and has room."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".aps-record-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RecordingError(
            f"cannot write episodes into {folder} ({err.strerror}): choose dataset=..."
        ) from err
    free_mb = shutil.disk_usage(folder).free / 1e6
    if free_mb < min_free_mb:
        raise RecordingError(
            f"{folder} has {free_mb:.0f} MB free, less than min_free_mb={min_free_mb:g}: free some space "
            "or record elsewhere (dataset=...)"
        )


def action_layout(env: object) -> ActionLayout:
    if not isinstance(env, ArmEnv):
        raise RecordingError("teleoperation drives arm tasks; for tmaze use source=scripted")
    return ActionLayout(tuple(env.ee_axes), env.has_gripper)


class SimBackend:
    """Episodes in MuJoCo in this process, written step by step (policies.episodes.EpisodeWriter).

    The last step is held back until the next one comes, so an episode ended by a key, the time
    limit or Esc gets `truncated` on its true last step (it stopped without the task ending)."""

    def __init__(self, config: RecordConfig) -> None:
        self.config = config
        self.dataset = EpisodeDataset(config.dataset)
        check_dataset_folder(self.dataset.root, config.min_free_mb)
        self.env = sim.make(config.task, config.env)
        self.fps = float(self.env.control_hz)
        self.teleop = (
            KeyboardTeleop(action_layout(self.env), config.keyboard) if config.source == "keyboard" else None
        )
        self.next_index = len(self.dataset)
        self.writer: EpisodeWriter | None = None
        self.last_saved: Path | None = None
        self.seed = 0
        self.steps = 0
        self.started = self.next_due = 0.0

    def stats(self) -> BackendStats:
        elapsed = time.monotonic() - self.started
        fps = self.steps / elapsed if self.writer is not None and elapsed > 0 else 0.0
        return BackendStats(self.steps, fps, self.fps, 0)

    def begin(self, rerecord: bool) -> None:
        if not rerecord:
            self.seed = demo_seed(self.config.seed, self.next_index)
            self.next_index += 1
        self.obs, _ = self.env.reset(seed=self.seed)
        self.expert = (
            sim.make_demonstrator(self.env, self.config.demo, self.seed)
            if self.config.source == "scripted"
            else None
        )
        if self.expert is not None:
            self.expert.reset()
        if self.teleop is not None:
            self.teleop.reset()
        self.writer = EpisodeWriter(self.dataset.next_path())
        self.writer.add_observation(self.obs, 0.0)
        self.held: tuple | None = None  # the last transition and observation, not yet written
        self.steps, self.success, self.done = 0, False, False
        self.started = self.next_due = time.monotonic()

    def wait(self, now: float) -> float:
        """Seconds until the next step is due (0: now)."""
        return max(0.0, self.next_due - now) if self.config.realtime else 0.0

    def poll(self, now: float) -> bool | None:
        """One control step when it is due; the sim's success once the task has ended the episode."""
        if self.done or self.writer is None or (self.config.realtime and now < self.next_due):
            return None
        self.next_due += 1.0 / self.fps
        if self.next_due < now:  # fell behind (a slow render): do not try to catch up in a burst
            self.next_due = now
        if self.teleop is not None:
            action = self.teleop.action(now)
        else:
            action = self.expert.act(self.obs) if self.expert is not None else np.zeros(1)
        self.obs, reward, terminated, truncated, info = self.env.step(action)
        self._write_held()
        self.steps += 1
        self.held = (action, reward, terminated, truncated, self.obs, self.steps / self.fps)
        self.success |= bool(info["success"])
        self.done = bool(terminated or truncated)
        return self.success if self.done else None

    def _write_held(self, end: bool = False) -> None:
        if self.held is None or self.writer is None:
            return
        action, reward, terminated, truncated, obs, stamp = self.held
        self.writer.add_transition(action, reward, terminated, truncated or (end and not terminated))
        self.writer.add_observation(obs, stamp)
        self.held = None

    def finish(self) -> bool | None:
        self.done = True
        return self.success

    def save(self, success: bool) -> Path:
        assert self.writer is not None
        self._write_held(end=True)
        attrs = {
            "task": self.config.task, "robot": self.env.robot_name, "fps": self.fps, "success": success,
            "source": "demo" if self.config.source == "keyboard" else "scripted", "seed": self.seed,
            "reported_success": self.success, "teleop": self.config.source,
        }  # fmt: skip
        path = self.writer.close(attrs)
        self.writer = None
        self.last_saved = self.dataset.added(path)
        return path

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.steps = 0

    def undo(self) -> Path:
        assert self.last_saved is not None
        path, self.last_saved = self.last_saved, None
        path.unlink()
        self.dataset.write_manifest()
        return path

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
                if session.phase == "recording":
                    reported = backend.poll(now)
                    if reported is not None:
                        session.episode_over(reported, now, "ended by the task")
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
    except (ConfigError, ValueError, RecordingError, EpisodeFormatError, OSError) as err:
        print(f"aps-record: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
