"""Test-wide environment: headless MuJoCo rendering, logs kept out of the home folder, and a ROS
domain of this test run's own (1..101, from the pid), with discovery kept on this machine."""

import os
import tempfile

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="aps-ros-log-"))
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture
def seeded_torch() -> None:
    """Learners draw initial weights from torch's global generator: tests seed it, as entry points do."""
    import torch

    torch.manual_seed(0)


@pytest.fixture
def episodes() -> list:
    """Four small synthetic episodes of 3, 9, 20 and 14 steps (tests.test_learner.make_episode)."""
    import numpy as np

    from tests.test_learner import make_episode

    rng = np.random.default_rng(0)
    return [make_episode(i, steps, rng) for i, steps in enumerate((3, 9, 20, 14))]
