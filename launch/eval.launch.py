"""Robot (or sim robot) + one policy node per checkpoint + the action mux, for aps-eval sessions.

    ros2 launch active_perception_stack eval.launch.py checkpoints:=/ck/aawr,/ck/bc --show-args

aps-eval starts this graph itself (`launch=false` when it runs already); the graph is described in
robot_nodes/graphs.py, which `aps-launch eval` starts the same way.
"""

from robot_nodes.graphs import launch_description


def generate_launch_description():
    return launch_description("eval")
