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

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from apsconfig import ConfigError, config_help, load_config

C = TypeVar("C")

COMMANDS = {
    "probe": "mutual information between a policy's hidden state and the belief, over training",
    "informativeness": "which privileged keys tell a critic about the return beyond the history",
    "warmup": "variability amongst attractors of a recurrent core, before and after its warmup",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, about in COMMANDS.items()]
    return "usage: aps-diagnose <command> [key=value ...]\n\ncommands:\n" + "\n".join(lines)


def run_command(
    name: str,
    doc: str,
    config_class: type[C],
    example: str,
    argv: list[str],
    run: Callable[[C], str],
    errors: tuple[type[Exception], ...] = (),
) -> int:
    """One command's main: its settings (--config YAML, key=value overrides, --help listing every
    field), then `run`, whose returned line is printed; a bad setting or input (ConfigError,
    ValueError, OSError and `errors`) is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(
        prog=f"aps-diagnose {name}",
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1] + "\n" + config_help(config_class),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help=f"a YAML file of {config_class.__name__}")
    parser.add_argument("overrides", nargs="*", help=f"key=value settings, e.g. {example}")
    args = parser.parse_args(argv)
    try:
        print(run(load_config(config_class, args.config, args.overrides)))
    except (ConfigError, ValueError, OSError, *errors) as err:
        print(f"aps-diagnose {name}: {err}", file=sys.stderr)
        return 2
    return 0


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
