"""What aps-record and aps-eval share as clients of a running graph: waiting on it with a deadline,
and the sim robot's reset service, which refuses until its lockstep graph is connected."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rclpy.client import Client
from std_srvs.srv import Trigger

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
