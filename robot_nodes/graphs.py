"""The launch graphs, described once for `ros2 launch` (launch/*.launch.py) and `aps-launch`.

A graph is a list of nodes (console script, node name) and its launch arguments; every node reads
its settings from the graph's parameter YAML (robot_nodes/config/<file>.yaml, the
`node: ros__parameters:` form, loaded into each node's typed config) and a launch argument can
override a few of them. `resolve` turns a graph and argument values into the nodes to start, and
both launchers start exactly those, so they cannot drift apart. When the graph's sim robot runs in
lockstep, every node of it runs with `use_sim_time`: the sim's /clock is the graph's time.

The eval graph runs one policy node per checkpoint (`checkpoints:=a,b`): `policy_0`, `policy_1`, ...,
each with the YAML's `policy` settings and its own checkpoint, publishing on `policy_<i>/action`;
the action mux forwards the one an evaluation session selects (robot_nodes/action_mux_core.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apsconfig import parse_yaml

PACKAGE = "active_perception_stack"
CONFIG = Path(__file__).parent / "config"


@dataclass(frozen=True)
class GraphNode:
    name: str  # node name, and its section in the parameter YAML
    executable: str  # aps-* console script (a `ros2 run` executable)


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    targets: tuple[str, ...] = ()  # node.parameter it sets when not empty


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    sim_nodes: tuple[GraphNode, ...]  # with robot:=sim
    real_nodes: tuple[GraphNode, ...]  # with robot:=real (hardware)
    default_robot: str = "sim"
    arguments: tuple[Argument, ...] = field(default_factory=tuple)


@dataclass
class NodeLaunch:
    name: str
    executable: str
    params_file: str
    overrides: dict[str, str]  # parameter -> value as text (parsed as YAML by ROS)
    remaps: dict[str, str] = field(default_factory=dict)  # topic -> the topic it is remapped to


SIM_ROBOT = GraphNode("sim_robot", "aps-sim-robot")
POLICY = GraphNode("policy", "aps-policy")
ROBOT_INTERFACE = GraphNode("robot_interface", "aps-robot-interface")
# On hardware: the wrist camera the policy acts on, and the fixed side camera the tracker reads.
WRIST_CAMERA = GraphNode("wrist_camera", "aps-camera")
SIDE_CAMERA = GraphNode("side_camera", "aps-camera")
TRACKER = GraphNode("privileged_tracker", "aps-privileged-tracker")
RECORDER = GraphNode("recorder", "aps-recorder")
LEARNER = GraphNode("learner", "aps-learner")
ACTION_MUX = GraphNode("action_mux", "aps-action-mux")

CHECKPOINT = Argument(
    "checkpoint",
    "",
    "policy checkpoint folder (aps-pretrain's checkpoints/<algo>-seed<n>)",
    ("policy.checkpoint", "learner.checkpoint"),
)
TASK = Argument(
    "task", "", "task name (sim.TASK_NAMES); empty: the parameter file's",
    ("sim_robot.task", "policy.task", "recorder.task", "learner.task"),
)  # fmt: skip
CHECKPOINTS = Argument(
    "checkpoints",
    "",
    "policy checkpoint folders, comma-separated: one policy node each (policy_0, policy_1, ...), "
    "switched by the action mux",
)
PARAMS = Argument("params_file", "", "parameter YAML of every node; empty: the package's file for this graph")
ROBOT = Argument("robot", "", "sim: the MuJoCo sim robot; real: cameras and the arm's controllers")
DEMOS = Argument("demos", "", "folder of demonstration episodes the learner starts from", ("learner.demos",))
DATASET = Argument(
    "dataset",
    "",
    "folder the online episodes are recorded into; empty: the parameter file's",
    ("recorder.dataset",),
)

GRAPHS = {
    "sim": Graph(
        "sim",
        "sim robot (lockstep) + policy + robot interface",
        (SIM_ROBOT, POLICY, ROBOT_INTERFACE),
        (),
        "sim",
        (PARAMS, CHECKPOINT, TASK),
    ),
    "robot": Graph(
        "robot",
        "wrist and side cameras + privileged tracker + robot interface on hardware",
        (),
        (WRIST_CAMERA, SIDE_CAMERA, TRACKER, ROBOT_INTERFACE),
        "real",
        (PARAMS,),
    ),
    "record": Graph(
        "record",
        "the robot (or sim robot) graph demonstrations are recorded on",
        (SIM_ROBOT, ROBOT_INTERFACE),
        (WRIST_CAMERA, SIDE_CAMERA, TRACKER, ROBOT_INTERFACE),
        "sim",
        (PARAMS, ROBOT, TASK),
    ),
    "train_online": Graph(
        "train_online",
        "robot (or sim robot) + privileged sensing + policy + recorder + learner: online training",
        (SIM_ROBOT, POLICY, ROBOT_INTERFACE, RECORDER, LEARNER),
        (WRIST_CAMERA, SIDE_CAMERA, TRACKER, POLICY, ROBOT_INTERFACE, RECORDER, LEARNER),
        "sim",
        (PARAMS, ROBOT, CHECKPOINT, TASK, DEMOS, DATASET),
    ),
    "eval": Graph(
        "eval",
        "robot (or sim robot) + a policy node per checkpoint + the action mux, for aps-eval sessions",
        (SIM_ROBOT, POLICY, ACTION_MUX, ROBOT_INTERFACE),
        (WRIST_CAMERA, SIDE_CAMERA, TRACKER, POLICY, ACTION_MUX, ROBOT_INTERFACE),
        "sim",
        (PARAMS, ROBOT, CHECKPOINTS, TASK),
    ),
    "deploy": Graph(
        "deploy",
        "wrist camera + policy + robot interface: no privileged sensor",
        (),
        (WRIST_CAMERA, POLICY, ROBOT_INTERFACE),
        "real",
        (PARAMS, CHECKPOINT),
    ),
}


class GraphError(ValueError):
    pass


def resolve(graph: Graph, values: dict[str, str]) -> list[NodeLaunch]:
    """The nodes to start for launch-argument `values` (missing ones take their defaults)."""
    known = {a.name for a in graph.arguments}
    unknown = sorted(set(values) - known)
    if unknown:
        raise GraphError(f"graph {graph.name!r} has no argument(s) {unknown}; its arguments: {sorted(known)}")
    robot = values.get("robot") or graph.default_robot
    if robot not in ("sim", "real") or not (graph.sim_nodes if robot == "sim" else graph.real_nodes):
        choices = [r for r, nodes in (("sim", graph.sim_nodes), ("real", graph.real_nodes)) if nodes]
        raise GraphError(f"graph {graph.name!r} runs with robot:=" + " or ".join(choices))
    nodes = graph.sim_nodes if robot == "sim" else graph.real_nodes
    default_file = {"deploy": "deploy.yaml"}.get(graph.name, "sim.yaml" if robot == "sim" else "robot.yaml")
    if graph.name == "eval" and robot == "sim":
        default_file = "eval.yaml"
    params = values.get("params_file") or str(CONFIG / default_file)
    if not Path(params).is_file():
        raise GraphError(f"parameter file not found: {params}")
    launches = []
    for node in nodes:
        if node == POLICY and CHECKPOINTS in graph.arguments:
            launches += policy_per_checkpoint(Path(params), values.get(CHECKPOINTS.name, ""))
        else:
            launches.append(NodeLaunch(node.name, node.executable, params, {}))
    if SIM_ROBOT in nodes and _lockstep(Path(params)):
        for launch in launches:
            launch.overrides["use_sim_time"] = "true"
        # the sim's first observation waits for every node that reads them (see wait_for_readers)
        readers = [x.name for x in launches if x.executable in (POLICY.executable, RECORDER.executable)]
        if readers:  # (an empty list is no ROS parameter: its type cannot be told)
            sim_robot = next(launch for launch in launches if launch.name == SIM_ROBOT.name)
            sim_robot.overrides["wait_for_readers"] = "[" + ", ".join(readers) + "]"
    policies = [launch for launch in launches if launch.executable == POLICY.executable]
    for argument in graph.arguments:
        value = values.get(argument.name, argument.default)
        for target in argument.targets:
            node, _, parameter = target.partition(".")
            for launch in policies if node == POLICY.name else [x for x in launches if x.name == node]:
                if value:
                    launch.overrides[parameter] = value
    for launch in launches:
        if launch.name == ACTION_MUX.name:
            launch.overrides["sources"] = "[" + ", ".join(p.remaps["action"] for p in policies) + "]"
    return launches


def split_checkpoints(text: str) -> list[str]:
    return [item.strip() for item in text.strip().strip("[]").split(",") if item.strip()]


def policy_per_checkpoint(params: Path, checkpoints: str) -> list[NodeLaunch]:
    """policy_<i> for the i-th checkpoint: the YAML's `policy` settings (as overrides: the node's own
    name has no section) and its checkpoint; its actions and weights on topics of its own."""
    folders = split_checkpoints(checkpoints)
    if not folders:
        raise GraphError("the eval graph runs one policy per checkpoint: give checkpoints:=folder_a,folder_b")
    section = (parse_yaml(params.read_text()) or {}).get(POLICY.name, {}).get("ros__parameters") or {}
    shared = parameter_overrides(section)
    return [
        NodeLaunch(
            f"policy_{i}",
            POLICY.executable,
            str(params),
            {**shared, "checkpoint": folder},
            {"action": f"policy_{i}/action", "policy_weights": f"policy_{i}/policy_weights"},
        )
        for i, folder in enumerate(folders)
    ]


def parameter_overrides(section: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A YAML section of parameters as `-p` overrides: one dotted name per leaf, its value as text."""
    flat: dict[str, str] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat |= parameter_overrides(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = _yaml_text(value)
    return flat


def _yaml_text(value: Any) -> str:
    """A value as ROS reads a parameter given on the command line (YAML flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_text(v) for v in value) + "]"
    return str(value)


def _lockstep(params_file: Path) -> bool:
    """Whether the sim robot of this parameter file steps in lockstep (its config's default if unset)."""
    from robot_nodes.sim_robot_core import SimRobotConfig  # imports the sim: only for sim graphs

    document = parse_yaml(params_file.read_text()) or {}
    section = (document.get(SIM_ROBOT.name) or {}).get("ros__parameters") or {}
    return section.get("lockstep", SimRobotConfig.lockstep) is True


def launch_description(name: str):  # -> launch.LaunchDescription (launch is not on PyPI)
    """The `ros2 launch` form of graph `name`: its arguments declared with descriptions, its nodes
    resolved from their values when the launch runs."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    graph = GRAPHS[name]

    def nodes(context, *args, **kwargs):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.arguments}
        return [
            Node(
                package=PACKAGE,
                executable=launch.executable,
                name=launch.name,
                output="screen",
                # parsed as ROS parses `-p name:=value` (launch_ros would keep a str a str)
                parameters=[launch.params_file, {k: parse_yaml(v) for k, v in launch.overrides.items()}]
                if launch.overrides
                else [launch.params_file],
                remappings=list(launch.remaps.items()),
            )
            for launch in resolve(graph, values)
        ]

    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
        for a in graph.arguments
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
