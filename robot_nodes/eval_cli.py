"""aps-eval: evaluation sessions. N trials per policy, interleaved, labelled, recorded, reported.

    # two checkpoints on the sim robot, 50 trials each, labelled by the sim: no operator needed
    aps-eval "policies=[runs/r/checkpoints/aawr-seed0, runs/r/checkpoints/bc-seed0]" \\
        trials_per_policy=50 out=evals/aawr-vs-bc
    # on the robot, blind: the operator sees A and B, labels with the arrows (the privileged
    # sensors suggest), and sets up each scene as the prompt says
    aps-eval robot=real blind=true "policies=[aawr=ck/aawr, bc=ck/bc]" trials_per_policy=20 \\
        out=evals/robot-ab "conditions=[cube left, cube right, cube behind the box]"
    aps-eval out=evals/robot-ab resume=true ...   # the same settings: goes on where it stopped
    aps-eval report evals/robot-ab                # the report again (an interim one mid-session)
    aps-eval sample-size 0.5 0.8                  # trials per policy to tell 50% from 80% apart

aps-eval starts the eval graph (the robot or sim robot, one policy node per checkpoint, the action
mux, the robot interface: `aps-launch eval` starts the same) unless launch=false, writes the plan,
then runs the trials in the planned order. Keys (a plain terminal, over SSH too): -> success, <-
failure, space e-stop, i intervention, r redo the trial, Esc stop; after a trial, Enter takes the
sensors' call, 1-5 tag a failure. The session folder holds plan.json, trials.jsonl, episodes/,
videos/, report.md and report.html. Bad input is one line on stderr and exit status 2, before the
first trial; `aps-eval --help` lists every setting.
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
from apsconfig import ConfigError, config_help, load_config, parse_yaml
from policies.metrics import exact_power, trials_needed
from robot_nodes.eval_display import render
from robot_nodes.eval_plan import Plan, PlanError, PolicyEntry, describe_policies, make_plan, read_plan
from robot_nodes.eval_records import (
    SessionFolder,
    append_record,
    finished_trials,
    open_session,
    read_records,
    start_session,
)
from robot_nodes.eval_report import write_report
from robot_nodes.eval_session import EvalError, EvalSession, LabelMode, SessionRules, TrialStats
from robot_nodes.graphs import GRAPHS, GraphError, NodeLaunch, parameter_overrides, resolve
from robot_nodes.policy_core import JointsLayout
from robot_nodes.recorder_core import RecorderError, RewardSource
from sim.base import ArmEnv
from sim.config import TaskConfig
from sim.rewards import RewardUnavailable, privileged_reward

REFRESH_S = 0.1  # the screen is redrawn at most this often
# the privileged vector (key or key:index) that is 1 while the object is in the onboard camera's view
SIGHT_KEYS = {"search-pick": "object_in_view", "shelf-search": "target_box_wrist:6"}


@dataclass
class EvalRecordConfig:
    """Each trial's episode, recorded through the recorder core (robot_nodes/recorder_core.py)."""

    onboard_streams: list[str] = field(default_factory=lambda: ["wrist/color/image_raw", "joint_states"])
    # the privileged state, and the third-person camera beside the wrist camera in the video (the sim
    # robot's; on a robot the tracker's vector and its fixed camera: [privileged, camera/color/image_raw])
    privileged_streams: list[str] = field(
        default_factory=lambda: ["privileged_state", "side/color/image_raw"]
    )
    # stream: the sim's own reward and success; task: the task's function on privileged data; label: the
    # trial's label only (no privileged success check); empty: stream on the sim robot, else task when the
    # task has a function on privileged data, else label
    reward: Literal["", "task", "label", "stream"] = ""
    control_hz: float = 10.0  # actions per second (the episode's fps)
    sync_tolerance: float = 0.02  # seconds: a frame further from its step counts as out of tolerance
    stale_after: float = 2.0  # seconds a stream may stay silent in a trial before it ends (device lost)
    min_free_space_mb: float = 500.0  # refuse to start (or end a trial) with less free disk space
    joints: JointsLayout = field(default_factory=JointsLayout)


@dataclass
class EvalConfig:
    policies: list[str] = field(default_factory=list)  # checkpoint folders (name=folder names one)
    out: str = ""  # the session folder: a new (or empty) one, or a session to resume
    trials_per_policy: int = 10  # trials of each policy: the session runs this many blocks
    seed: int = 0  # the plan's: trial order, blind labels and the sim's initial conditions
    blind: bool = False  # the operator sees only A, B, ...; names and running scores stay hidden
    robot: Literal["sim", "real"] = "sim"  # sim: the MuJoCo sim robot; real: the robot graph on hardware
    task: str = ""  # the task the checkpoints were trained for (empty: theirs; they must agree)
    # sensors: the privileged success check labels every trial (no operator); confirm: it suggests, the
    # operator confirms or overrides; operator: keys only; empty: sensors in the sim, else confirm where
    # the task has a privileged check, else operator
    labels: Literal["", "sensors", "confirm", "operator"] = ""
    trial_time_s: float = 60.0  # a trial ends (a timeout) after this long in the robot's time; 0: never
    # between trials: start the next after this long (0: at once), or < 0: when the operator presses a key;
    # null: at once in the sim, on a key on a real robot
    reset_time_s: float | None = None
    conditions: list[str] = field(default_factory=list)  # a robot's initial conditions, used equally often
    sight_key: str = ""  # privileged key[:index] that is 1 while the object is in view; empty: the task's
    video: bool = True  # a video of each trial (the cameras side by side)
    video_height: int = 240  # pixels: every camera scaled to it (nearest pixel), so small sim images show
    resume: bool = False  # continue the session in `out` (same settings), where it stopped
    launch: bool = True  # start the eval graph here (false: it runs already, from aps-launch or ros2 launch)
    params_file: str = ""  # the eval graph's parameter YAML (empty: the package's)
    startup_timeout: float = 30.0  # seconds for the graph's nodes and topics to come up
    mux: str = "action_mux"  # the action mux node
    reset_service: str = "sim_robot/reset"  # the sim robot's reset; ignored on a real robot
    record: EvalRecordConfig = field(default_factory=EvalRecordConfig)

    def __post_init__(self) -> None:
        if not self.out:
            raise ValueError("out is not set: give the session folder (out=evals/my-session)")
        if self.trials_per_policy < 1 or self.startup_timeout <= 0 or self.trial_time_s < 0:
            raise ValueError("trials_per_policy must be >= 1, startup_timeout > 0 and trial_time_s >= 0")
        if self.task and self.task not in sim.TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(sim.TASK_NAMES)}")


# --- what the settings resolve to -------------------------------------------------------------------


def has_privileged_check(task: str) -> bool:
    try:
        privileged_reward(task)
    except RewardUnavailable:
        return False
    return True


def label_mode(config: EvalConfig, task: str) -> LabelMode:
    if config.labels:
        return config.labels
    if config.robot == "sim":
        return "sensors"
    return "confirm" if has_privileged_check(task) else "operator"


def reward_source(config: EvalConfig, task: str) -> RewardSource:
    if config.record.reward:
        return config.record.reward
    if config.robot == "sim":
        return "stream"
    return "task" if has_privileged_check(task) else "label"


def task_facts(task: str) -> tuple[list[str], bool]:
    """The sim task's onboard cameras and whether it has a gripper."""
    env = sim.make(task, TaskConfig(image_size=16))
    try:
        cameras = [k for k, s in env.observation_space["onboard"].spaces.items() if len(s.shape) == 3]
        return cameras, isinstance(env, ArmEnv) and env.has_gripper
    finally:
        env.close()


def check_cameras(policies: list[PolicyEntry], cameras: list[str]) -> None:
    """A sim session: every policy reads cameras the sim task has, all at one image size."""
    for policy in policies:
        other = sorted(set(policy.cameras) - set(cameras))
        if other:
            raise EvalError(
                f"policy {policy.name} reads camera(s) {other}, which {policy.task} does not have "
                f"(its cameras: {cameras}): it was trained for another camera set"
            )
    sizes = {tuple(shape) for p in policies for shape in p.cameras.values()}
    if len(sizes) > 1:
        raise EvalError(
            f"the policies read images of different sizes {sorted(sizes)}: the sim renders one size"
        )


def sim_env(policies: list[PolicyEntry]) -> dict[str, object]:
    """The sim robot's task settings: those the first checkpoint was trained and tested with (its
    aps-pretrain run's config.yaml, when found), at the policies' image size. So a sim session
    measures what aps-pretrain's own evaluation measured."""
    run_config = Path(policies[0].checkpoint).resolve().parent.parent / "config.yaml"
    env: dict[str, object] = {}
    if run_config.is_file():
        env = dict((parse_yaml(run_config.read_text()) or {}).get("env") or {})
    env.pop("tmaze", None)  # read only by the tmaze task; nested, and a ROS parameter cannot be null
    env = {k: v for k, v in env.items() if v is not None}
    shapes = [shape for shape in policies[0].cameras.values()]
    if shapes:
        env["image_size"] = int(shapes[0][0])
    return env


def graph_launches(config: EvalConfig, plan: Plan) -> list[NodeLaunch]:
    values = {
        "robot": config.robot,
        "checkpoints": ",".join(p.checkpoint for p in plan.policies),
        "task": plan.settings["task"],
    }
    if config.params_file:
        values["params_file"] = config.params_file
    launches = resolve(GRAPHS["eval"], values)
    for launch in launches:
        if launch.name == "sim_robot":
            launch.overrides |= parameter_overrides(plan.settings.get("sim_env") or {}, "env.")
    return launches


# --- the session ------------------------------------------------------------------------------------


class GraphRunner:
    """The eval graph's processes, started here (launch=true), their output in the session folder."""

    def __init__(self, launches: list[NodeLaunch], log: Path) -> None:
        from robot_nodes.launch_cli import GraphProcesses, command

        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log, "a")  # noqa: SIM115 (closed in stop)
        self.processes = GraphProcesses([(launch.name, command(launch)) for launch in launches], self.log)

    def alive(self) -> str:
        """'' while every node runs; else which exited, with its last words from the log."""
        self.processes.exited()
        if not self.processes.codes:
            return ""
        self.log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        notes = []
        for name, code in self.processes.codes.items():
            said = [line for line in lines if f"[{name}]" in line]
            notes.append(
                f"{name} exited (status {code})" + (f": {said[-1].split(']: ', 1)[-1]}" if said else "")
            )
        return f"; {'; '.join(notes)} (see {self.log_path})"

    def stop(self) -> None:
        self.processes.stop()
        self.log.close()


def prepare(config: EvalConfig) -> tuple[Plan, SessionFolder, list, SessionRules, bool]:
    """Everything checked before anything moves: the checkpoints, the camera set, the folder."""
    policies = describe_policies(config.policies, config.task)
    task = policies[0].task
    cameras, gripper = task_facts(task)
    if config.robot == "sim":
        check_cameras(policies, cameras)
    labels = label_mode(config, task)
    if labels == "sensors" and reward_source(config, task) == "label":
        raise EvalError(f"labels=sensors needs a privileged success check, and {task} has none here: "
                        "use labels=operator (or record.reward=stream on the sim robot)")  # fmt: skip
    folder = SessionFolder(config.out)
    settings = {
        "task": task, "robot": config.robot, "labels": labels, "trial_time_s": config.trial_time_s,
        "sim_env": sim_env(policies) if config.robot == "sim" else None,
    }  # fmt: skip
    plan = make_plan(
        policies, config.trials_per_policy, config.seed, config.blind, config.conditions,
        sim=config.robot == "sim", session=folder.root.name, settings=settings,
    )  # fmt: skip
    plan, records = open_session(folder, plan, config.resume)
    reset = (
        config.reset_time_s if config.reset_time_s is not None else (0.0 if config.robot == "sim" else -1.0)
    )
    return plan, folder, records, SessionRules(labels, config.trial_time_s, reset), gripper


def run(config: EvalConfig, console: Console | None = None) -> EvalSession | None:
    from robot_nodes.eval_ros import RosEvalBackend, sight_frame
    from robot_nodes.recorder_streams import RecorderNodeConfig
    from robot_nodes.teleop import TerminalKeys

    console = console or Console()
    plan, folder, records, rules, gripper = prepare(config)
    interactive = stdin_is_terminal()
    if not interactive and (rules.labels != "sensors" or rules.reset_time_s < 0):
        raise EvalError(
            "an operator labels or starts the trials from this terminal: run aps-eval in one (or "
            "labels=sensors with reset_time_s=0 for a session without an operator)"
        )
    task = plan.settings["task"]
    record = config.record
    recorder = RecorderNodeConfig(
        dataset=str(folder.episodes), task=task, robot=config.robot, source="policy",
        control_hz=record.control_hz, onboard_streams=record.onboard_streams,
        privileged_streams=record.privileged_streams, reward=reward_source(config, task),
        sync_tolerance=record.sync_tolerance, stale_after=record.stale_after,
        min_free_space_mb=record.min_free_space_mb, joints=record.joints, episodes="control",
        send_episodes=False, startup_timeout=config.startup_timeout,
    )  # fmt: skip
    sight = config.sight_key or SIGHT_KEYS.get(task, "")
    graph = GraphRunner(graph_launches(config, plan), folder.graph_log) if config.launch else None
    backend = None
    session: EvalSession | None = None
    try:
        backend = RosEvalBackend(
            recorder, plan, folder, mux=config.mux,
            reset_service=config.reset_service if config.robot == "sim" else "",
            sight_key=sight_frame("" if sight == "none" else sight), gripper=gripper,
            video_height=config.video_height if config.video else 0,
            startup_timeout=config.startup_timeout, graph_alive=graph.alive if graph else lambda: "",
        )  # fmt: skip
        start_session(folder, plan)
        keys = TerminalKeys(sys.stdin.fileno()) if interactive else None
        title = f"aps-eval  {task}  {config.robot}  -> {folder.root}"
        with keys or nullcontext(), Live(console=console, auto_refresh=False, transient=False) as live:
            session = EvalSession(
                plan, records, rules, backend, lambda r: append_record(folder, r), time.monotonic()
            )
            shown = 0.0
            try:
                while session.phase != "done":
                    pressed = keys.read(REFRESH_S / 2) if keys is not None else []
                    if keys is None:
                        time.sleep(0.01)
                    now = time.monotonic()
                    for key in pressed:
                        phase = session.phase
                        session.key(key, now)
                        if session.phase != phase and keys is not None:
                            keys.flush()
                    session.tick(now)
                    if now - shown >= REFRESH_S or session.phase == "done":
                        stats = backend.stats() if session.phase == "running" else TrialStats(0, 0.0, 0.0)
                        live.update(render(session, stats, now, title), refresh=True)
                        shown = now
            except KeyboardInterrupt:
                session.key("ctrl-c", time.monotonic())
    finally:
        if backend is not None:
            backend.close()
        if folder.plan.is_file():  # the graph idles meanwhile: nothing is selected
            report = write_report(folder, plan)
            console.print(session.message if session else "no trial ran")
            console.print(f"report: {folder.report_html} ({len(report.done)} of {len(plan.trials)} trials)")
        if graph is not None:
            graph.stop()
    return session


# --- the other commands -------------------------------------------------------------------------------


def report_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aps-eval report", description="the report of a session folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    folder = SessionFolder(args.out)
    if not folder.plan.is_file():
        raise PlanError(f"{args.out} holds no aps-eval session (no plan.json)")
    report = write_report(folder, read_plan(folder.plan))
    done = f"{len(report.done)} of {len(report.plan.trials)} trials"
    print(f"wrote {folder.report_md} and {folder.report_html} ({done})")
    return 0


def sample_size_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="aps-eval sample-size",
        description="trials per policy for a two-sided test to tell success rates p1 and p2 apart",
    )
    parser.add_argument("p1", type=float)
    parser.add_argument("p2", type=float)
    parser.add_argument("--power", type=float, default=0.8)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    needed = trials_needed(args.p1, args.p2, args.power, args.alpha)
    power = exact_power(needed, args.p1, args.p2, args.alpha) if needed <= 150 else None
    check = f"; Fisher's exact test has {power:.0%} power there (by enumeration)" if power is not None else ""
    print(f"{needed} trials per policy to tell {args.p1:g} from {args.p2:g} apart "
          f"(power {args.power:g}, two-sided alpha {args.alpha:g}){check}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"report": report_command, "sample-size": sample_size_command}
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        if argv and argv[0] in commands:
            return commands[argv[0]](argv[1:])
        parser = argparse.ArgumentParser(
            prog="aps-eval",
            description=__doc__.split("\n\n")[0],
            epilog=__doc__.split("\n\n", 1)[1] + "\nsettings:\n" + config_help(EvalConfig),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--config", type=Path, help="a YAML file of settings (EvalConfig)")
        parser.add_argument("overrides", nargs="*", help="key=value settings, e.g. trials_per_policy=20")
        args = parser.parse_args(argv)
        config = load_config(EvalConfig, args.config, args.overrides)
        run(config)
    except EvalError as err:  # the robot's side: before the first trial, or mid-session
        print(f"aps-eval: {err}{progress_note(argv)}", file=sys.stderr)
        return 2
    except (ConfigError, ValueError, PlanError, GraphError, RecorderError, OSError) as err:
        print(f"aps-eval: {err}", file=sys.stderr)
        return 2
    return 0


def stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's captured stdin)
        return False


def progress_note(argv: list[str]) -> str:
    """After a failure mid-session: how many trials the log keeps (a session folder's only)."""
    out = next((a.split("=", 1)[1] for a in argv if a.startswith("out=")), "")
    folder = SessionFolder(out) if out else None
    if folder is None or not folder.plan.is_file():
        return ""
    try:
        done, total = len(finished_trials(read_records(folder))), len(read_plan(folder.plan).trials)
    except PlanError:
        return ""
    return f" ({done} of {total} trials are logged in {out}: resume=true continues)" if done < total else ""


if __name__ == "__main__":
    raise SystemExit(main())
