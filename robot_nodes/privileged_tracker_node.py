"""aps-privileged-tracker: the object's pose in the base frame, for the critic (core: tracker_core.py).

    aps-privileged-tracker --ros-args -p source:=aruco -p aruco.marker_id:=7 \\
        -p camera_info_path:=calib/side.yaml -p extrinsics_path:=calib/side_in_base.yaml
    aps-privileged-tracker --ros-args -p source:=mocap -p mocap.transform_path:=calib/mocap_in_base.yaml

In: `image_topic` (sensor_msgs/Image rgb8 or bgr8, from the calibrated fixed camera) or, for mocap,
`mocap.topic` (geometry_msgs/PoseStamped). Out: `pose_topic` (geometry_msgs/PoseStamped in the base
frame, only while the object is tracked; the colour tracker gives no orientation and sends the
identity) and `vector_topic` (the privileged vector, a stamped labelled Float32MultiArray, one per
input, `object_visible` 0 when lost), both reliable. The camera's pose (or the mocap frame's) goes
out as a static transform: through tf2_ros when it is installed (a system ROS 2); the PyPI wheels
have no tf2_ros / tf2_msgs, so it is always also latched on `~/static_transform`
(geometry_msgs/TransformStamped, transient-local). Tracking runs in a worker thread on the newest
image only: a slow frame drops the ones behind it instead of queueing them.
"""

from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray

from calibration.geometry import make_pose, matrix_from_quaternion, quaternion_from_matrix
from robot_nodes.entry import run_node
from robot_nodes.messages import MessageError, from_time, header, image_from_msg, vectors_to_msg
from robot_nodes.params import declare_config, node_options
from robot_nodes.qos import latched_qos, sensor_qos
from robot_nodes.tracker_core import (
    LatestSlot,
    PrivilegedTracker,
    StaleInput,
    Track,
    TrackerNodeConfig,
    TrackerSetupError,
)

try:  # a system ROS 2 install has tf2_ros; the PyPI wheels do not
    from tf2_ros import StaticTransformBroadcaster
except ImportError:
    StaticTransformBroadcaster = None


class PrivilegedTrackerNode(Node):
    def __init__(self) -> None:
        super().__init__("privileged_tracker", **node_options())
        self.config = declare_config(self, TrackerNodeConfig)
        self.core = PrivilegedTracker(self.config)
        self.checked_frame = False

        outputs = sensor_qos(reliable=True)
        self.poses = self.create_publisher(PoseStamped, self.config.pose_topic, outputs)
        self.vectors = self.create_publisher(Float32MultiArray, self.config.vector_topic, outputs)
        self.static_transform = self.create_publisher(TransformStamped, "~/static_transform", latched_qos())
        self.tf_static = StaticTransformBroadcaster(self) if StaticTransformBroadcaster is not None else None
        self.publish_static_transform()

        self.slot: LatestSlot[Image] = LatestSlot()
        self.worker: threading.Thread | None = None
        if self.config.source == "mocap":
            # Best effort matches mocap drivers publishing either way; poses are small.
            self.create_subscription(PoseStamped, self.config.mocap.topic, self.on_mocap_pose, sensor_qos())
            self.create_timer(self.config.mocap.max_age_s, self.on_mocap_timeout)
        else:
            images = sensor_qos(reliable=self.config.image_reliability == "reliable")
            self.create_subscription(Image, self.config.image_topic, self.slot.put, images)
            self.worker = threading.Thread(target=self.track_images, name="tracker", daemon=True)
            self.worker.start()
        self.get_logger().info(
            f"{self.config.source} tracker: object in {self.core.base_frame} -> {self.config.pose_topic}, "
            f"{self.config.vector_topic} {self.core.keys}"
        )

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def publish_static_transform(self) -> None:
        if self.core.camera is not None:
            transform = self.core.camera.base_from_camera
        else:
            transform = self.core.tracker.base_from_mocap
        msg = TransformStamped(header=header(self.now_ns(), transform.parent_frame))
        msg.child_frame_id = transform.child_frame
        x, y, z = transform.matrix[:3, 3]
        msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = x, y, z
        rotation = msg.transform.rotation
        rotation.x, rotation.y, rotation.z, rotation.w = quaternion_from_matrix(transform.matrix[:3, :3])
        self.static_transform.publish(msg)
        if self.tf_static is not None:
            self.tf_static.sendTransform(msg)

    # --- camera sources: a worker on the newest image --------------------------------------------
    def track_images(self) -> None:
        while (msg := self.slot.take()) is not None:
            self.check_frame(msg.header.frame_id)
            try:
                track = self.core.track_image(image_from_msg(msg), from_time(msg.header.stamp), self.now_ns())
            except StaleInput as err:
                self.get_logger().warning(f"image dropped: {err}", throttle_duration_sec=5.0)
                continue
            except (MessageError, TrackerSetupError) as err:
                self.get_logger().error(f"image refused: {err}", throttle_duration_sec=5.0)
                continue
            self.publish(track)

    def check_frame(self, frame_id: str) -> None:
        camera_frame = self.core.camera.base_from_camera.child_frame
        if not self.checked_frame and frame_id != camera_frame:
            self.get_logger().warning(
                f"images are in frame {frame_id!r} but extrinsics_path is for {camera_frame!r}: calibrate "
                f"with aps-calibrate handeye camera_frame={frame_id} so the TF tree joins up"
            )
        self.checked_frame = True

    # --- motion capture --------------------------------------------------------------------------
    def on_mocap_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        try:
            body = make_pose(matrix_from_quaternion([q.x, q.y, q.z, q.w]), [p.x, p.y, p.z])
            track = self.core.track_pose(body, from_time(msg.header.stamp), self.now_ns())
        except (StaleInput, ValueError) as err:
            self.get_logger().warning(f"mocap pose dropped: {err}", throttle_duration_sec=5.0)
            return
        self.publish(track)

    def on_mocap_timeout(self) -> None:
        lost = self.core.lost_since(self.now_ns())
        if lost is not None:
            self.publish(lost)

    def publish(self, track: Track) -> None:
        self.vectors.publish(vectors_to_msg(self.core.vector(track), track.stamp_ns))
        if not track.visible:
            return
        msg = PoseStamped(header=header(track.stamp_ns, self.core.base_frame))
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in track.position)
        w, x, y, z = track.quaternion if track.quaternion is not None else np.array([1.0, 0.0, 0.0, 0.0])
        orientation = msg.pose.orientation
        orientation.w, orientation.x, orientation.y, orientation.z = float(w), float(x), float(y), float(z)
        self.poses.publish(msg)

    def destroy_node(self) -> None:
        self.slot.close()
        if self.worker is not None:
            self.worker.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(PrivilegedTrackerNode, args, "privileged_tracker")


if __name__ == "__main__":
    raise SystemExit(main())
