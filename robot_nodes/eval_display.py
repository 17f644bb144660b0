"""aps-eval's screen (rich): the session's progress, the trial's phase and clock, the keys that act
now, and the reset prompt with the next trial's initial condition. Plain text styles only, so it
reads the same over SSH. No rclpy."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from robot_nodes.eval_session import EvalSession, TrialStats

PHASE_STYLE = {
    "reset": ("RESET THE SCENE", "bold white on blue"),
    "running": ("TRIAL RUNNING", "bold white on red"),
    "marking": ("SUCCESS?", "bold black on yellow"),
    "tagging": ("WHY DID IT FAIL?", "bold black on yellow"),
    "done": ("DONE", "bold white on green"),
}
KEYS = {
    "reset": "-> / Enter start the trial    Esc / x stop (resume=true continues later)",
    "running": "-> success    <- failure    space E-STOP (intervention)    i mark an intervention    "
    "r redo this trial    Esc / x stop",
    "marking": "-> / s success    <- / f failure    Enter: the sensors' call    r redo    Esc / x stop",
    "tagging": "1 missed grasp   2 never found the object   3 timeout   4 intervention   5 other    "
    "Enter: the suggestion    r redo",
    "done": "",
}


def render(session: EvalSession, stats: TrialStats, now: float, title: str) -> Panel:
    label, style = PHASE_STYLE[session.phase]
    trial = session.trial
    where = f"  {session.done} of {session.total} trials done  "
    if session.phase == "running":
        limit = session.rules.trial_time_s
        clock = f"{stats.elapsed_s:5.1f} s" + (f" of {limit:g} s" if limit else "")
    elif session.phase == "reset" and session.rules.reset_time_s > 0:
        clock = f"starts in {max(0.0, session.rules.reset_time_s - session.elapsed(now)):4.1f} s"
    else:
        clock = ""
    lines: list = [Text.assemble((f" {label} ", style), where, clock)]
    if trial is not None and session.phase != "done":
        policy = session.policy_name(trial)
        lines.append(
            Text(f"trial {trial.index + 1}: policy {policy}, initial condition: {trial.condition}", "bold")
        )
    if session.phase == "running":
        lines.append(
            Text(f"steps {stats.steps}   {stats.fps:4.1f} steps/s   interventions {session.interventions}")
        )
    if session.phase == "marking":
        call = {None: "no call", True: "success", False: "failure"}[session.suggestion]
        lines.append(Text(f"success or failure? (the sensors say: {call})", style="bold yellow"))
    grid = Table.grid(padding=(0, 3))
    if not session.plan.blind:  # a blind operator sees no running score: it could sway the labels
        grid.add_row(
            *(
                f"{p.label} ({p.name}): {session.tally(p.label)[0]}/{session.tally(p.label)[1]}"
                for p in session.plan.policies
            )
        )
        lines.append(grid)
    if session.message:
        lines.append(Text(session.message, style="italic"))
    lines.append(Text(KEYS[session.phase], style="dim"))
    return Panel(Group(*lines), title=title, title_align="left")
