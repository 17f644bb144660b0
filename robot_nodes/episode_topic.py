"""Finished episode files over ROS, recorder -> learner: the topic, its QoS and the sending side.

The packets are `robot_nodes.episode_transfer` chunks in `std_msgs/UInt8MultiArray` messages on
`episode_files`. QoS: reliable (every chunk counts), volatile (a learner that joins later does not
want the backlog replayed from the recorder's memory: the recorder's disk keeps every episode), keep
all: the writer holds each chunk until every reader has acknowledged it, and the reader holds what
its node has not taken yet, so a file of any size arrives whole however the two sides lag.
(`Publisher.wait_for_all_acked` would bound the writer's memory, but it holds the GIL while it
waits, and acknowledgements can take a heartbeat period, 3 s in Fast DDS: it froze the recorder.)
Sending runs on a thread of its own, so a large file never stalls the recorder's callbacks.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import UInt8MultiArray

from robot_nodes.episode_transfer import DEFAULT_CHUNK_BYTES, episode_chunks

EPISODE_FILES_TOPIC = "episode_files"


def episode_files_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )  # fmt: skip


class EpisodeSender:
    """Queue finished episode files with `send(path)`; a thread publishes them chunk by chunk."""

    def __init__(self, node: Node, chunk_bytes: int = DEFAULT_CHUNK_BYTES, topic: str = EPISODE_FILES_TOPIC):
        self.publisher = node.create_publisher(UInt8MultiArray, topic, episode_files_qos())
        self.logger = node.get_logger()
        self.chunk_bytes = chunk_bytes
        self.prefix = f"{socket.gethostname()}-{os.getpid()}"  # transfers of this sender, unique on the graph
        self.sent = 0
        self.pending: queue.Queue[Path | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="episode-sender", daemon=True)
        self.thread.start()

    def send(self, path: Path) -> None:
        self.pending.put(Path(path))

    def _run(self) -> None:
        while (path := self.pending.get()) is not None:
            if self.publisher.get_subscription_count() == 0:
                self.logger.warning(
                    f"no reader on {self.publisher.topic_name}: {path.name} stays on disk only"
                )
                continue
            transfer = f"{self.prefix}-{self.sent}"
            self.sent += 1
            for packet in episode_chunks(path, transfer, self.chunk_bytes):
                self.publisher.publish(UInt8MultiArray(data=packet))
            self.logger.info(f"sent {path.name} ({path.stat().st_size / 1e6:.1f} MB) as transfer {transfer}")

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued (within `timeout`), then stop the thread."""
        self.pending.put(None)
        self.thread.join(timeout)
