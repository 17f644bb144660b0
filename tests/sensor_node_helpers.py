"""Node processes and a probe node for the sensor nodes' tests (each node in its own process, over
DDS on loopback, in the test run's own ROS_DOMAIN_ID that conftest.py sets)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

VENV_BIN = Path(sys.executable).parent


def load_ros_middleware_first() -> None:
    """Load the ROS middleware (Fast DDS) into this process before pyrealsense2, which carries its own
    copy: the other order crashes the process at exit (cameras.load_pyrealsense2)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    rclpy.shutdown(context=context)


def write_params(path: Path, node: str, values: dict) -> Path:
    path.write_text(yaml.safe_dump({node: {"ros__parameters": values}}))
    return path


def start(executable: str, params: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(VENV_BIN / executable), "--ros-args", "--params-file", str(params)],
            stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip


def stop(process: subprocess.Popen) -> int:
    """SIGINT (Ctrl-C), as a user or a launcher stops a node; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def log_lines(log: Path, level: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if f"[{level}]" in line]


@contextmanager
def probe(name: str) -> Iterator:
    """A node of the test's own, in a context of its own, spun with `spin_until`."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    node.executor_for_test = executor
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def spin_until(node, condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        node.executor_for_test.spin_once(timeout_sec=0.02)
    return condition()
