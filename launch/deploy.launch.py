"""Camera + policy + robot interface: no privileged sensor.

    ros2 launch active_perception_stack deploy.launch.py --show-args

The graph is described in robot_nodes/graphs.py, which `aps-launch deploy` starts the same way.
"""

from robot_nodes.graphs import launch_description


def generate_launch_description():
    return launch_description("deploy")
