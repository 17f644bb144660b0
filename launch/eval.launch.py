"""Robot (or sim robot) + policy, for evaluation sessions.

    ros2 launch active_perception_stack eval.launch.py --show-args

The graph is described in robot_nodes/graphs.py, which `aps-launch eval` starts the same way.
"""

from robot_nodes.graphs import launch_description


def generate_launch_description():
    return launch_description("eval")
