"""The `main()` of every node: init rclpy, build the node, spin, shut down cleanly.

    def main(args: list[str] | None = None) -> int:
        return run_node(PolicyNode, args)

Bad settings or inputs found while the node is built (a typo in the YAML, a checkpoint for another
task, an unknown task) are one log line and exit status 2, as for the other entry points of the
stack; Ctrl-C and an external shutdown end the spin quietly, and the node is destroyed in `finally`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from apsconfig import ConfigError


class StartupError(RuntimeError):
    """A node cannot start as configured (e.g. a topic it needs has no publisher): the message says
    what to fix."""


# What a node's constructor raises for bad input; each is a message meant for the user.
STARTUP_ERRORS: tuple[type[BaseException], ...] = (ConfigError, StartupError, ValueError, KeyError, OSError)


def run_node(build: Callable[[], Node], args: list[str] | None = None, name: str = "") -> int:
    """Run one node until Ctrl-C or shutdown; 2 when it cannot start, with the reason logged."""
    rclpy.init(args=args if args is not None else sys.argv)
    node: Node | None = None
    try:
        node = build()
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
