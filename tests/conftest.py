"""Test-wide environment: headless MuJoCo rendering, logs kept out of the home folder, and a ROS
domain of this test run's own (1..101, from the pid), with discovery kept on this machine."""

import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="aps-ros-log-"))
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
