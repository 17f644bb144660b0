"""What colcon's ament_python build needs beyond pyproject.toml (which holds the metadata, the
packages and the console scripts): the ament index marker, package.xml, launch files and their
parameter YAML under share/<package>, so `ros2 launch active_perception_stack sim.launch.py` works."""

from glob import glob

from setuptools import setup

PACKAGE = "active_perception_stack"

setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("robot_nodes/config/*.yaml")),
    ],
)
