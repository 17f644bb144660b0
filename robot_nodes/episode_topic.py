"""Finished episode files over ROS, recorder -> learner: the topic, its QoS and the sending side.

The packets are `robot_nodes.episode_transfer` chunks in `std_msgs/UInt8MultiArray` messages on
`episode_files`. QoS: reliable (every chunk counts), volatile (a learner that joins later does not
want the backlog replayed from the recorder's memory: the recorder's disk keeps every episode), keep
last `WINDOW`: the sender waits for every reader to acknowledge each window before it sends the
next, so no unacknowledged chunk is ever pushed out of the history, whatever the file's size.
Sending runs on a thread of its own, so a large file never stalls the recorder's callbacks.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from pathlib import Path

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import UInt8MultiArray

from robot_nodes.episode_transfer import DEFAULT_CHUNK_BYTES, episode_chunks

EPISODE_FILES_TOPIC = "episode_files"
WINDOW = 16  # chunks in flight before the sender waits for acknowledgements
ACK_TIMEOUT_S = 30.0  # a reader that acknowledges nothing this long is given up on for that file


def episode_files_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=WINDOW, reliability=ReliabilityPolicy.RELIABLE,
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
            acknowledged = True
            for index, packet in enumerate(episode_chunks(path, transfer, self.chunk_bytes)):
                self.publisher.publish(UInt8MultiArray(data=packet))
                if (index + 1) % WINDOW == 0:
                    acknowledged &= self._wait_acked()
            acknowledged &= self._wait_acked()
            if acknowledged:
                self.logger.info(
                    f"sent {path.name} ({path.stat().st_size / 1e6:.1f} MB) as transfer {transfer}"
                )
            else:
                self.logger.warning(
                    f"{path.name}: a reader of {self.publisher.topic_name} acknowledged nothing for "
                    f"{ACK_TIMEOUT_S:g} s; it may lack this episode (the file stays on disk)"
                )

    def _wait_acked(self) -> bool:
        return self.publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued (within `timeout`), then stop the thread."""
        self.pending.put(None)
        self.thread.join(timeout)
