"""The action mux's core: which policy's actions reach the robot interface. No rclpy.

An evaluation session compares policies trial by trial. Each runs in a policy node of its own
(`policy_0`, `policy_1`, ...: loaded once, warm, each resetting its recurrent state at every
episode start, publishing on `policy_<i>/action`), and the mux forwards the actions of the one
the session selects to `action`, which the robot interface obeys. Why this and not a policy node
restarted per trial, or new weights sent to one node: a node refuses weights that are not newer
(and the session's order goes back and forth between policies), and a restart costs seconds of
imports and discovery per trial; a switch here is one message, and no policy is ever half loaded.

Nothing is selected between trials, so no policy drives the arm while the operator resets the
scene (the robot interface's watchdog holds it). The selection is a dead-man switch: the session
renews it every fraction of a second, and when it has not been renewed for `lease` seconds (the
session crashed, or its machine lost the network) the mux stops forwarding, so the arm is held.
ROS's own mux (topic_tools) is not on PyPI, takes no lease and is C++: this is its few lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

NONE = ""  # the selection when no source is forwarded


@dataclass
class ActionMuxConfig:
    READ_ONLY: ClassVar[tuple[str, ...]] = ("sources",)

    # action topics that may be forwarded to `action`, e.g. [policy_0/action, policy_1/action]
    sources: list[str] = field(default_factory=list)
    # seconds a selection holds without being renewed on ~/select (0: until changed; wall clock)
    lease: float = 2.0

    def __post_init__(self) -> None:
        if len(set(self.sources)) < len(self.sources) or NONE in self.sources:
            raise ValueError(f"sources must be distinct topic names, got {self.sources}")
        if self.lease < 0:
            raise ValueError(f"lease must be >= 0 seconds, got {self.lease}")


class SelectionError(ValueError):
    """A selection the mux cannot take; the text names the known sources."""


class ActionMuxCore:
    def __init__(self, config: ActionMuxConfig) -> None:
        self.config = config
        self.selected = NONE
        self.renewed_s: float | None = None  # steady time of the last select message
        self.forwarded = 0  # messages forwarded from the current selection
        self.dropped = 0  # messages of sources not selected (between trials, or the others')

    def select(self, source: str, now_s: float) -> str | None:
        """Take (or renew) a selection; a log line when it changed, else None."""
        if source != NONE and source not in self.config.sources:
            raise SelectionError(f"{source!r} is not a source of the mux; its sources: {self.config.sources}")
        self.renewed_s = now_s
        if source == self.selected:
            return None
        previous, self.selected, self.forwarded = self.selected, source, 0
        return f"forwarding {source or 'nothing'} (was {previous or 'nothing'})"

    def lapse(self, now_s: float) -> str | None:
        """Drop a selection whose lease ran out; the log line when it did."""
        lease = self.config.lease
        if self.selected == NONE or not lease or self.renewed_s is None or now_s - self.renewed_s <= lease:
            return None
        lapsed, self.selected = self.selected, NONE
        return f"selection of {lapsed} not renewed for {lease:g} s: forwarding nothing (the arm is held)"

    def forward(self, source: str) -> bool:
        if source == self.selected and source != NONE:
            self.forwarded += 1
            return True
        self.dropped += 1
        return False
