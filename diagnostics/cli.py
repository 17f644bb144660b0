"""aps-diagnose: questions about memory and privileged signals, answered into a run's folder.

    aps-diagnose probe run=runs/<run> targets=[belief]             # what the memory holds, over training
    aps-diagnose informativeness run=runs/<run>                    # which privileged signal a critic needs
    aps-diagnose warmup ...                                        # whether a recurrent core keeps a bit
    aps-diagnose <command> --help                                  # the command's settings

Each command is the module diagnostics.<command>, imported only when it runs (so one command's
dependencies never hold up another), whose main(argv) parses its own key=value settings and writes
a short report (Markdown and a PNG) into <run>/diagnostics/ unless told otherwise.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "probe": "mutual information between a policy's hidden state and the belief, over training",
    "informativeness": "which privileged keys tell a critic about the return beyond the history",
    "warmup": "variability amongst attractors of a recurrent core, before and after its warmup",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, about in COMMANDS.items()]
    return "usage: aps-diagnose <command> [key=value ...]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0] + "\n\n" + usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"aps-diagnose: unknown command {command!r}\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"diagnostics.{command}")
    except ModuleNotFoundError as err:
        if err.name != f"diagnostics.{command}":
            raise  # the command exists but something it imports is missing: that traceback is the fix
        print(
            f"aps-diagnose: the {command} command (module diagnostics.{command}) is not in this "
            "installation; update the package (pip install -e .) or use another command",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("MUJOCO_GL", "egl")
    status = module.main(rest)
    return 0 if status is None else int(status)


if __name__ == "__main__":
    raise SystemExit(main())
