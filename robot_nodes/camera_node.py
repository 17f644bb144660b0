"""aps-camera: a RealSense, a RealSense recording or any OpenCV device on ROS (core: camera_core.py).

    aps-camera --ros-args -p camera_name:=side -p realsense.serial_number:="'123422071234'" \\
        -p realsense.depth:=true -p camera_info_path:=calib/side.yaml
    aps-camera --ros-args -p type:=recording -p recording.path:=side.db3 -p recording.depth:=true
    aps-camera --ros-args -p type:=opencv -p opencv.source:=/dev/video0 -p camera_info_path:=calib/usb.yaml

Publishes realsense-ros's topics (`<camera>/color/image_raw` rgb8, `<camera>/color/camera_info`,
and with depth `<camera>/aligned_depth_to_color/image_raw` 16UC1 mm + its camera_info), frame id
`<camera>_color_optical_frame`, stamps from device time (camera_core.py says how). Images are
reliable by default: Fast DDS drops best-effort images over ~512 KB, and a reliable publisher also
serves best-effort subscribers; keep-last `image_queue` (10) frames, so a slow subscriber loses the
oldest frames instead of slowing the camera. camera_info is reliable and transient-local, published with every
image. Reading runs in its own thread; the executor only serves parameters.
"""

from __future__ import annotations

import copy
import threading
import time

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from robot_nodes.camera_core import CameraNodeConfig, CameraStream, Outgoing, topic_names
from robot_nodes.cameras import CameraSettingsError
from robot_nodes.entry import run_node
from robot_nodes.messages import camera_info_to_msg, image_to_msg
from robot_nodes.params import declare_config, node_options
from robot_nodes.qos import BEST_EFFORT_LIMIT_BYTES, latched_qos, sensor_qos


class CameraNode(Node):
    def __init__(self) -> None:
        # rclpy is initialised before the reader imports pyrealsense2 (see cameras.load_pyrealsense2).
        super().__init__("camera", **node_options())
        self.config = declare_config(self, CameraNodeConfig)
        self.stop = threading.Event()
        self.stream = CameraStream(self.config, self.get_logger(), self.now_ns, sleep=self.stop.wait)
        # A settings error found by the reader (after start): raised in the executor, so the node
        # stops as for bad settings at start (one log line, exit status 2).
        self.fatal = self.create_guard_condition(self.exit_on_settings_error)
        self.fatal_error = ""

        topics = topic_names(self.config.camera_name)
        images = copy.copy(sensor_qos(reliable=self.config.image_reliability == "reliable"))
        images.depth = self.config.image_queue
        self.color = self.create_publisher(Image, topics["color"], images)
        self.color_info = self.create_publisher(CameraInfo, topics["color_info"], latched_qos())
        self.depth = self.depth_info = None
        if self.config.depth:
            self.depth = self.create_publisher(Image, topics["depth"], images)
            self.depth_info = self.create_publisher(CameraInfo, topics["depth_info"], latched_qos())
        self.reader = threading.Thread(target=self.read_and_publish, name="camera-reader", daemon=True)
        self.reader.start()

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def read_and_publish(self) -> None:
        self.wait_for_subscriber()
        warned_size = False
        try:
            while not self.stop.is_set():
                outgoing = self.stream.next()
                if outgoing is None:
                    if self.stream.ended:
                        return
                    continue
                if not warned_size and self.config.image_reliability == "best_effort":
                    warned_size = self.warn_if_too_large(outgoing)
                self.publish(outgoing)
        except CameraSettingsError as err:
            self.fatal_error = str(err)
            self.fatal.trigger()

    def exit_on_settings_error(self) -> None:
        self.get_logger().error(f"cannot run: {self.fatal_error}")
        raise SystemExit(2)

    def wait_for_subscriber(self) -> None:
        """With wait_for_subscriber_s, hold the device closed until someone listens (a recording
        then plays from its first frame)."""
        deadline = time.monotonic() + self.config.wait_for_subscriber_s
        while time.monotonic() < deadline and self.color.get_subscription_count() == 0:
            if self.stop.wait(0.02):
                return

    def warn_if_too_large(self, outgoing: Outgoing) -> bool:
        if outgoing.color.data.nbytes > BEST_EFFORT_LIMIT_BYTES:
            self.get_logger().warning(
                f"{outgoing.color.data.nbytes} byte images with best_effort QoS are dropped by Fast DDS "
                "(over ~512 KB): set image_reliability: reliable"
            )
        return True

    def publish(self, outgoing: Outgoing) -> None:
        frame_id = self.config.color_frame_id
        info = self.stream.camera_info
        color = outgoing.color
        if info is not None:
            self.color_info.publish(camera_info_to_msg(info, color.stamp_ns, frame_id))
        self.color.publish(image_to_msg(color.data, color.stamp_ns, frame_id, "rgb8"))
        depth = outgoing.depth
        if depth is not None and self.depth is not None:
            if info is not None:  # aligned to colour: the colour intrinsics, in the colour frame
                self.depth_info.publish(camera_info_to_msg(info, depth.stamp_ns, frame_id))
            self.depth.publish(image_to_msg(depth.data, depth.stamp_ns, frame_id, "16UC1"))

    def destroy_node(self) -> None:
        self.stop.set()
        self.reader.join(timeout=self.config.device.timeout_s + 2.0)
        self.stream.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, args, "camera")


if __name__ == "__main__":
    raise SystemExit(main())
