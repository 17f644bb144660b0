"""aps-launch: start a launch graph without ROS's launch installed, one process per node, from the
same description and YAML as `ros2 launch active_perception_stack <graph>.launch.py`.

    aps-launch sim checkpoint:=runs/<run>/checkpoints/aawr-seed0
    aps-launch eval robot:=sim params_file:=my_eval.yaml checkpoint:=...

Each node's pid is printed as it starts. A node that exits is reported and the others go on (as
with `ros2 launch`); Ctrl-C (or SIGTERM) stops them all: SIGINT, then SIGKILL after 5 s.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    for name, value in launch.overrides.items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd


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
    processes: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, cmd in commands:
        processes[name] = subprocess.Popen(cmd)
        print(f"[aps-launch] started {name} (pid {processes[name].pid}): {' '.join(cmd)}", flush=True)
    running = dict(processes)
    codes: dict[str, int] = {}
    while running and not stopping:
        for name, process in list(running.items()):
            if process.poll() is not None:
                codes[name] = process.returncode
                print(f"[aps-launch] {name} exited with code {process.returncode}", flush=True)
                del running[name]
        time.sleep(0.05)
    for process in running.values():
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for name, process in running.items():
        try:
            codes[name] = process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[aps-launch] {name} did not stop within {STOP_GRACE_S:g} s: killed", flush=True)
            process.kill()
            codes[name] = process.wait()
    return max([0, *(code for code in codes.values() if code > 0)])


if __name__ == "__main__":
    raise SystemExit(main())
