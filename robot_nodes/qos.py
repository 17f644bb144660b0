"""QoS profiles by role (DESIGN.md, "ROS 2 graph"); topic names stay relative so namespaces work.

- sensors: sensor-data QoS (best effort, keep last 5), except images over ~512 KB, which best-effort
  drops whole through Fast DDS's shared-memory segment (STACK.md: 640x480 rgb8 arrives 0/120), and
  lockstep graphs, where one lost frame would stall the loop: those are reliable;
- commands and episode events: reliable, volatile;
- camera_info, calibration, weights and other state a late joiner needs: reliable, transient-local;
- /clock: keep last 1, reliable, so rclpy's time source (best effort) and any reliable reader match.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

BEST_EFFORT_LIMIT_BYTES = 512 * 1024  # Fast DDS's default shared-memory segment (STACK.md)


def sensor_qos(reliable: bool = False) -> QoSProfile:
    """Camera images, joint states, tracked vectors. `reliable` for lockstep graphs."""
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )  # fmt: skip


def image_qos(
    width: int, height: int, channels: int, bytes_per_channel: int = 1, reliable: bool = False
) -> QoSProfile:
    """`sensor_qos`, reliable when one image is too large for best effort to deliver."""
    too_large = width * height * channels * bytes_per_channel > BEST_EFFORT_LIMIT_BYTES
    return sensor_qos(reliable or too_large)


def command_qos(depth: int = 10) -> QoSProfile:
    """Arm and gripper commands, policy actions, episode events: every message counts."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )  # fmt: skip


def latched_qos(depth: int = 1) -> QoSProfile:
    """The last value stays available to late subscribers: camera_info, calibration, weights, e-stop."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )  # fmt: skip


def clock_qos() -> QoSProfile:
    """/clock: only the newest time matters."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )  # fmt: skip
