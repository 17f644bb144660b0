"""aps-launch: start a launch graph without ROS's launch installed, one process per node, from the
same description and YAML as `ros2 launch active_perception_stack <graph>.launch.py`.

    aps-launch sim checkpoint:=runs/<run>/checkpoints/aawr-seed0
    aps-launch eval robot:=sim params_file:=my_eval.yaml checkpoint:=...

Each node's pid is printed as it starts. A node that exits is reported and the others go on (as
with `ros2 launch`); Ctrl-C (or SIGTERM) stops them all: SIGINT, then SIGKILL after 5 s. The nodes
die with this process even when it is killed: none is left running unseen. aps-eval
starts its graph the same way (`GraphProcesses`).
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from robot_nodes.graphs import GRAPHS, GraphError, NodeLaunch, resolve

STOP_GRACE_S = 5.0


def command(launch: NodeLaunch) -> list[str]:
    executable = Path(sys.executable).parent / launch.executable
    path = str(executable) if executable.exists() else shutil.which(launch.executable)
    if path is None:
        raise GraphError(
            f"{launch.executable} is not installed (pip install -e '.[ros]', or source the workspace)"
        )
    cmd = [path, "--ros-args", "-r", f"__node:={launch.name}", "--params-file", launch.params_file]
    for topic, target in launch.remaps.items():
        cmd += ["-r", f"{topic}:={target}"]
    for name, value in launch.overrides.items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd


PR_SET_PDEATHSIG = 1  # prctl(2)
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # looked up before any fork


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent dies, however it dies (Linux's prctl through
    ctypes: the standard library has no binding). Not SIGTERM: rclpy's shutdown can hang in
    destroy_node (seen here: the action mux spinning in destroy_when_not_in_use), and with the
    launcher gone nothing would follow up with SIGKILL. A node killed so leaves the arm as a crashed
    one does (Servo's command timeout, the trajectory controller's last target)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class GraphProcesses:
    """The nodes of a resolved graph, one process each."""

    def __init__(self, commands: list[tuple[str, list[str]]], output: IO | None = None) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        for name, cmd in commands:
            self.processes[name] = subprocess.Popen(
                cmd, stdout=output, stderr=subprocess.STDOUT if output else None, preexec_fn=_die_with_parent
            )
        self.running = dict(self.processes)
        self.codes: dict[str, int] = {}
        self.killed: list[str] = []  # nodes that did not stop within STOP_GRACE_S

    def exited(self) -> list[tuple[str, int]]:
        """Nodes that exited since the last call, with their exit status."""
        gone = []
        for name, process in list(self.running.items()):
            if process.poll() is not None:
                self.codes[name] = process.returncode
                gone.append((name, process.returncode))
                del self.running[name]
        return gone

    def stop(self) -> int:
        """SIGINT to every node still running, SIGKILL after STOP_GRACE_S; the worst exit status."""
        for process in self.running.values():
            process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for name, process in self.running.items():
            try:
                self.codes[name] = process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                self.codes[name] = process.wait()
                self.killed.append(name)
        self.running = {}
        return max([0, *(code for code in self.codes.values() if code > 0)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aps-launch",
        description=__doc__.split("\n\n")[0],
        epilog="graphs:\n"
        + "\n".join(
            f"  {g.name}: {g.description}; arguments: "
            + ", ".join(f"{a.name} ({a.description})" for a in g.arguments)
            for g in GRAPHS.values()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("graph", choices=sorted(GRAPHS))
    parser.add_argument("arguments", nargs="*", help="name:=value launch arguments")
    args = parser.parse_args(argv)
    try:
        values = {}
        for item in args.arguments:
            name, sep, value = item.partition(":=")
            if not sep:
                raise GraphError(f"argument {item!r} must look like name:=value")
            values[name] = value
        launches = resolve(GRAPHS[args.graph], values)
        commands = [(launch.name, command(launch)) for launch in launches]
    except GraphError as err:
        print(f"aps-launch: {err}", file=sys.stderr)
        return 2
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    graph = GraphProcesses(commands)
    for name, cmd in commands:
        print(f"[aps-launch] started {name} (pid {graph.processes[name].pid}): {' '.join(cmd)}", flush=True)
    while graph.running and not stopping:
        for name, code in graph.exited():
            print(f"[aps-launch] {name} exited with code {code}", flush=True)
        time.sleep(0.05)
    code = graph.stop()
    for name in graph.killed:
        print(f"[aps-launch] {name} did not stop within {STOP_GRACE_S:g} s: killed", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
