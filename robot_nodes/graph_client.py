"""What aps-record and aps-eval share as clients of a running graph: waiting on it with a deadline,
the sim robot's reset service (it refuses until its lockstep graph is connected), its episode
events, and feeding the in-process recorder core from the callbacks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from rclpy.client import Client
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from robot_nodes.messages import EpisodeEvent, MessageError
from robot_nodes.recorder_core import RecorderCore, RecorderError

T = TypeVar("T")


def wait_until(ready: Callable[[], T | None], timeout_s: float, timed_out: Callable[[], Exception]) -> T:
    """The first value of `ready()` that is not None; `timed_out()` is raised after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (value := ready()) is None:
        if time.monotonic() > deadline:
            raise timed_out()
        time.sleep(0.005)
    return value


def call_sim_reset(
    client: Client,
    wait: Callable[[Callable[[], Any], str], Any],
    timeout_s: float,
    refused: Callable[[str], Exception],
) -> tuple[int, int]:
    """(episode, seed) of the sim robot's next episode. A lockstep sim refuses a reset until every
    node of its graph is matched (a loaded machine takes seconds), so a refusal is asked again
    until `timeout_s`; `wait(ready, what)` waits for each answer, `refused(message)` is raised after."""
    deadline = time.monotonic() + timeout_s
    while True:
        future = client.call_async(Trigger.Request())
        response = wait(lambda f=future: f.result() if f.done() else None, "the sim's reset")
        if response.success:
            answer = json.loads(response.message)
            return int(answer["episode"]), int(answer["seed"])
        if time.monotonic() > deadline:
            raise refused(f"the sim robot's reset refused: {response.message}")
        time.sleep(0.2)


def keep_event(events: dict[tuple[str, int], EpisodeEvent], lock: threading.Lock, msg: String) -> None:
    """An `episode_events` message into `events` by (kind, episode); a malformed one is dropped (its
    sender is the one to log it)."""
    try:
        event = EpisodeEvent.from_msg(msg)
    except MessageError:
        return
    with lock:
        events[(event.kind, event.episode)] = event


def add_to_core(
    core: RecorderCore,
    node: Node,
    topic: str,
    stamp_ns: int,
    arrays: dict[str, np.ndarray],
    policy_version: int | None = None,
) -> None:
    """A stream's frame into the recorder core; one it refuses is a throttled warning, so a bad frame
    never ends the ROS callback that brought it."""
    try:
        core.add(topic, stamp_ns, arrays, policy_version)
    except RecorderError as err:
        node.get_logger().warning(f"{topic}: {err}", throttle_duration_sec=1.0)
