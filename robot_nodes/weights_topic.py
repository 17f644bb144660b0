"""Policy weights over ROS: the publishing side (the learner node of a later issue calls it) and the
topic's QoS. The policy node subscribes with the same profile and checks what arrives
(`policies.weights.unpack_actor_weights`); a learner on another machine reaches it over DDS."""

from __future__ import annotations

import torch
from rclpy.node import Node
from rclpy.publisher import Publisher
from std_msgs.msg import UInt8MultiArray

from policies.networks import ObsSpec
from policies.weights import pack_actor_weights
from robot_nodes.qos import latched_qos

WEIGHTS_TOPIC = "policy_weights"


def weights_publisher(node: Node, topic: str = WEIGHTS_TOPIC) -> Publisher:
    """Reliable and transient-local: a policy node that starts later still gets the last weights."""
    return node.create_publisher(UInt8MultiArray, topic, latched_qos())


def weights_message(packet: bytes) -> UInt8MultiArray:
    return UInt8MultiArray(data=packet)


def publish_weights(
    publisher: Publisher, actor: torch.nn.Module, version: int, task: str, spec: ObsSpec
) -> None:
    publisher.publish(weights_message(pack_actor_weights(actor, version, task, spec)))
