"""The robot (or sim robot) graph demonstrations are recorded on.

    ros2 launch active_perception_stack record.launch.py --show-args

The graph is described in robot_nodes/graphs.py, which `aps-launch record` starts the same way.
"""

from robot_nodes.graphs import launch_description


def generate_launch_description():
    return launch_description("record")
