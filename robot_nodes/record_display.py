"""aps-record's screen (rich): the phase, episode i of N, elapsed time, fps, dropped frames, the success
tally and the keys that act now. Plain text styles only, so it reads the same over SSH. No rclpy."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from robot_nodes.record_session import BackendStats, RecordSession

PHASE_STYLE = {
    "recording": ("RECORDING", "bold white on red"),
    "marking": ("MARK IT", "bold black on yellow"),
    "reset": ("RESET THE SCENE", "bold white on blue"),
    "done": ("DONE", "bold white on green"),
}
KEYS = {
    "recording": "-> / n end    <- / b discard, re-record    Esc / x save and stop",
    "marking": "s / up success   f / down failure   Enter: the sensors' call   <- / b discard   Esc / x stop",
    "reset": "-> / n / Enter start now    <- / b delete the last episode, re-record it    Esc / x stop",
    "done": "",
}


def render(
    session: RecordSession, stats: BackendStats, now: float, title: str, teleop_help: str = ""
) -> Panel:
    label, style = PHASE_STYLE[session.phase]
    config = session.config
    elapsed = session.elapsed(now)
    if session.phase == "recording" and config.episode_time_s:
        clock = f"{elapsed:5.1f} s of {config.episode_time_s:g} s"
    elif session.phase == "reset":
        clock = f"next episode in {max(0.0, config.reset_time_s - elapsed):4.1f} s"
    else:
        clock = f"{elapsed:5.1f} s"
    if session.phase == "done":
        where = f"  {session.saved} of {config.num_episodes} episodes saved  "
    else:
        where = f"  episode {session.episode} of {config.num_episodes}  "
    head = Text.assemble((f" {label} ", style), where, clock)
    grid = Table.grid(padding=(0, 3))
    grid.add_row(
        f"steps {stats.steps}",
        f"fps {stats.fps:4.1f} (target {stats.target_fps:g})",
        Text(f"dropped frames {stats.dropped}", style="bold red" if stats.dropped else ""),
    )
    grid.add_row(
        f"saved {session.saved}",
        f"successes {session.successes}/{session.saved}",
        f"discarded {session.discarded}",
    )
    lines = [head, grid]
    if session.phase == "marking":
        call = {None: "unknown", True: "success", False: "failure"}[session.suggestion]
        lines.append(Text(f"success or failure? (the sensors say: {call})", style="bold yellow"))
    if session.message:
        lines.append(Text(session.message, style="italic"))
    lines.append(Text(KEYS[session.phase], style="dim"))
    if session.phase == "recording" and teleop_help:
        lines.append(Text(f"teleop: {teleop_help}", style="dim"))
    return Panel(Group(*lines), title=title, title_align="left")
