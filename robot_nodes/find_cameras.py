"""aps-find-cameras: the RealSense and OpenCV video devices this machine can open now.

    aps-find-cameras            # one line per device: type, then serial number / name or the path

Use a line's serial number as `realsense.serial_number`, or its path as `opencv.source`, in
aps-camera's parameters.
"""

from __future__ import annotations

from robot_nodes.cameras import find_cameras


def main(argv: list[str] | None = None) -> int:
    devices = find_cameras()
    for device in devices:
        print("  ".join(f"{key}={value}" for key, value in device.items()))
    if not devices:
        print("no RealSense and no /dev/video* device: check the cables (a RealSense needs USB 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
