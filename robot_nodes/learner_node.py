"""aps-learner: AAWR on the robot's episodes as they come, versioned weights out (core: learner_core.py).

    aps-learner --ros-args -p task:=search-pick -p demos:=data/demos \\
        -p checkpoint:=runs/<run>/checkpoints/aawr-seed0 -p out_dir:=learner

Loads the demonstrations, trains offline (or starts from `checkpoint`), then takes every episode the
recorder sends on `episode_files` (chunks of the file, `robot_nodes.episode_topic`; its own copy goes
to <out_dir>/episodes, so no file system is shared with the robot), trains the updates each one earns
(`trainer.updates_per_step`, batches mixed by `trainer.demo_fraction`) and publishes the new weights
on `policy_weights` (reliable, transient-local; the policy node checks them and swaps them in between
episodes). Training runs on a thread of its own: chunks are taken while it trains. It can run on
another machine (a GPU workstation: device:=cuda) that reaches the robot's DDS domain.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import torch
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from policies.learner import NonFiniteLossError
from robot_nodes.entry import run_node
from robot_nodes.episode_topic import EPISODE_FILES_TOPIC, episode_files_qos
from robot_nodes.episode_transfer import EpisodeAssembler
from robot_nodes.learner_core import IngestError, LearnerCore, LearnerNodeConfig, learner_threads
from robot_nodes.params import declare_config, node_options
from robot_nodes.weights_topic import weights_message, weights_publisher


class LearnerNode(Node):
    def __init__(self) -> None:
        super().__init__("learner", **node_options())
        self.config = declare_config(self, LearnerNodeConfig)
        # Linux keeps a niceness per thread: set before torch's and the trainer's threads exist, they
        # inherit it (the DDS threads rclpy started before keep theirs: they only move messages)
        os.nice(self.config.niceness)
        # This node is its process: seeding here is seeding in the entry point (initial weights, DrQ).
        torch.manual_seed(self.config.seed)
        torch.set_num_threads(learner_threads(self.config.threads))
        self.core = LearnerCore(self.config)
        self.assembler = EpisodeAssembler(self.core.episodes_dir, self.get_logger().warning)
        self.arrived: queue.Queue[Path] = queue.Queue()
        self.weights = weights_publisher(self)
        self.create_subscription(UInt8MultiArray, EPISODE_FILES_TOPIC, self.on_chunk, episode_files_qos())
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self.train, name="trainer", daemon=True)
        self.worker.start()
        where = f"checkpoint v{self.core.version}" if self.config.checkpoint else "a fresh learner"
        self.get_logger().info(
            f"learner for {self.config.task} from {where}, {len(self.core.trainer.demos)} demos; "
            f"episodes into {self.core.episodes_dir}"
        )

    def on_chunk(self, msg: UInt8MultiArray) -> None:
        path = self.assembler.add(bytes(msg.data))
        if path is not None:
            self.arrived.put(path)

    # --- the training thread --------------------------------------------------------------------
    def train(self) -> None:
        log, core, chunk = self.get_logger(), self.core, self.config.slice_updates
        try:
            while core.offline_left and not self.stopping.is_set():
                core.train_offline(chunk)
            if self.stopping.is_set():
                return
            core.go_online()
            self.publish()
            while not self.stopping.is_set():
                self.ingest_arrivals(wait=core.trainer.owed_updates == 0)
                if core.train_owed(chunk) and core.trainer.owed_updates == 0:
                    self.publish()
                    if core.save_due():
                        log.info(f"checkpoint saved: {core.save()}")
        except NonFiniteLossError as err:
            log.error(f"training stopped, version {core.published} stays published: {err}")

    def ingest_arrivals(self, wait: bool) -> None:
        try:
            path = self.arrived.get(timeout=0.1) if wait else self.arrived.get_nowait()
        except queue.Empty:
            return
        try:
            self.get_logger().info(self.core.ingest(path))
        except IngestError as err:
            self.get_logger().error(f"episode not trained on: {err}")

    def publish(self) -> None:
        packet = self.core.new_weights()
        if packet is not None:
            self.weights.publish(weights_message(packet))
            trainer = self.core.trainer
            self.get_logger().info(
                f"weights v{self.core.published} published ({trainer.updates} updates, "
                f"{trainer.online_episodes} online episodes)"
            )

    def destroy_node(self) -> None:
        self.stopping.set()
        self.worker.join()
        if self.core.trainer.online_episodes:
            self.get_logger().info(f"checkpoint saved: {self.core.save()}")
        self.assembler.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(LearnerNode, args, "learner", finish_callbacks=True)  # it writes files


if __name__ == "__main__":
    raise SystemExit(main())
