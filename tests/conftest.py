"""Test-wide environment: headless MuJoCo rendering, logs kept out of the home folder."""

import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="aps-ros-log-"))
