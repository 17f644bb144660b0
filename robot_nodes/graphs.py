"""The launch graphs, described once for `ros2 launch` (launch/*.launch.py) and `aps-launch`.

A graph is a list of nodes (console script, node name) and its launch arguments; every node reads
its settings from the graph's parameter YAML (robot_nodes/config/<file>.yaml, the
`node: ros__parameters:` form, loaded into each node's typed config) and a launch argument can
override a few of them. `resolve` turns a graph and argument values into the nodes to start, and
both launchers start exactly those, so they cannot drift apart. When the graph's sim robot runs in
lockstep, every node of it runs with `use_sim_time`: the sim's /clock is the graph's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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


SIM_ROBOT = GraphNode("sim_robot", "aps-sim-robot")
POLICY = GraphNode("policy", "aps-policy")
ROBOT_INTERFACE = GraphNode("robot_interface", "aps-robot-interface")
CAMERA = GraphNode("camera", "aps-camera")  # hook: the camera node (ros-sensors branch)
TRACKER = GraphNode("privileged_tracker", "aps-privileged-tracker")  # hook: the privileged tracker
RECORDER = GraphNode("recorder", "aps-recorder")
LEARNER = GraphNode("learner", "aps-learner")

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
        "cameras + privileged tracker + robot interface on hardware",
        (),
        (CAMERA, TRACKER, ROBOT_INTERFACE),
        "real",
        (PARAMS,),
    ),
    "record": Graph(
        "record",
        "the robot (or sim robot) graph demonstrations are recorded on",
        (SIM_ROBOT, ROBOT_INTERFACE),
        (CAMERA, TRACKER, ROBOT_INTERFACE),
        "sim",
        (PARAMS, ROBOT, TASK),
    ),
    "train_online": Graph(
        "train_online",
        "robot (or sim robot) + privileged sensing + policy + recorder + learner: online training",
        (SIM_ROBOT, POLICY, ROBOT_INTERFACE, RECORDER, LEARNER),
        (CAMERA, TRACKER, POLICY, ROBOT_INTERFACE, RECORDER, LEARNER),
        "sim",
        (PARAMS, ROBOT, CHECKPOINT, TASK, DEMOS, DATASET),
    ),
    "eval": Graph(
        "eval",
        "robot (or sim robot) + policy, for evaluation sessions",
        (SIM_ROBOT, POLICY, ROBOT_INTERFACE),
        (CAMERA, TRACKER, POLICY, ROBOT_INTERFACE),
        "sim",
        (PARAMS, ROBOT, CHECKPOINT, TASK),
    ),
    "deploy": Graph(
        "deploy",
        "camera + policy + robot interface: no privileged sensor",
        (),
        (CAMERA, POLICY, ROBOT_INTERFACE),
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
    params = values.get("params_file") or str(CONFIG / default_file)
    if not Path(params).is_file():
        raise GraphError(f"parameter file not found: {params}")
    sim_time = SIM_ROBOT in nodes and _lockstep(Path(params))
    launches = [
        NodeLaunch(node.name, node.executable, params, {"use_sim_time": "true"} if sim_time else {})
        for node in nodes
    ]
    by_name = {launch.name: launch for launch in launches}
    for argument in graph.arguments:
        value = values.get(argument.name, argument.default)
        for target in argument.targets:
            node, _, parameter = target.partition(".")
            if value and node in by_name:
                by_name[node].overrides[parameter] = value
    return launches


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
                parameters=[launch.params_file, launch.overrides]
                if launch.overrides
                else [launch.params_file],
            )
            for launch in resolve(graph, values)
        ]

    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
        for a in graph.arguments
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
