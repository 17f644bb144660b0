"""Robot (or sim robot) + privileged sensing + policy, for online training.

    ros2 launch active_perception_stack train_online.launch.py --show-args

The graph is described in robot_nodes/graphs.py, which `aps-launch train_online` starts the same way.
"""

from robot_nodes.graphs import launch_description


def generate_launch_description():
    return launch_description("train_online")
