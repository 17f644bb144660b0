"""Sim robot (lockstep) + policy + robot interface.

    ros2 launch active_perception_stack sim.launch.py --show-args

The graph is described in robot_nodes/graphs.py, which `aps-launch sim` starts the same way.
"""

from robot_nodes.graphs import launch_description


def generate_launch_description():
    return launch_description("sim")
