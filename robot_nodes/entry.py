"""The `main()` of every node: init rclpy, build the node, spin, shut down cleanly.

    def main(args: list[str] | None = None) -> int:
        return run_node(PolicyNode, args)

Bad settings or inputs found while the node is built (a typo in the YAML, a checkpoint for another
task, an unknown task) are one log line and exit status 2, as for the other entry points of the
stack; Ctrl-C and an external shutdown end the spin quietly, and the node is destroyed in `finally`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from apsconfig import ConfigError


class StartupError(RuntimeError):
    """A node cannot start as configured (e.g. a topic it needs has no publisher): the message says
    what to fix."""


DRAIN_S = 0.5  # finish_callbacks: how long the messages queued at Ctrl-C are still taken

# What a node's constructor raises for bad input; each is a message meant for the user.
STARTUP_ERRORS: tuple[type[BaseException], ...] = (ConfigError, StartupError, ValueError, KeyError, OSError)


def run_node(
    build: Callable[[], Node], args: list[str] | None = None, name: str = "", finish_callbacks: bool = False
) -> int:
    """Run one node until Ctrl-C or shutdown; 2 when it cannot start, with the reason logged.
    `finish_callbacks`: Ctrl-C and SIGTERM let the callback in progress finish, and what is queued
    be taken for DRAIN_S, before the node is destroyed: for nodes that write files (a
    KeyboardInterrupt raised in the middle of a write would leave a torn one behind)."""
    options = SignalHandlerOptions.NO if finish_callbacks else SignalHandlerOptions.ALL
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=options)
    stop = threading.Event()
    if finish_callbacks:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: stop.set())
    node: Node | None = None
    try:
        node = build()
        if finish_callbacks:
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
            drained = time.monotonic() + DRAIN_S  # take what is queued already (the last frames)
            while time.monotonic() < drained and rclpy.ok():
                executor.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin(node)
    except STARTUP_ERRORS as err:
        if node is not None:  # the node started: this is a crash, not bad settings
            raise
        logger = rclpy.logging.get_logger(name or getattr(build, "__name__", "node"))
        logger.error(f"cannot start: {err}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
