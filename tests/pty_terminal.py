"""A program on a pseudo-terminal, as an operator sees and drives it (aps-record, aps-eval)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
RIGHT, LEFT, ESC, ENTER = b"\x1b[C", b"\x1b[D", b"\x1b", b"\r"


class Terminal:
    """What the program shows (ANSI codes stripped), and keys typed into it."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 130, 0, 0))
        env = {**(env or os.environ), "TERM": "xterm-256color"}
        self.process = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.screen, self.seen = "", 0

    def read(self, timeout: float) -> None:
        if select.select([self.master], [], [], timeout)[0]:
            try:
                self.screen += ANSI.sub(b"", os.read(self.master, 1 << 16)).decode(errors="replace")
            except OSError:  # the program exited and closed its side
                time.sleep(timeout)

    def expect(self, text: str, timeout: float = 30.0) -> None:
        """Wait until `text` shows up after what the last expect matched."""
        deadline = time.monotonic() + timeout
        while (found := self.screen.find(text, self.seen)) < 0:
            assert time.monotonic() < deadline, f"{text!r} never showed; screen ends:\n{self.screen[-1500:]}"
            self.read(0.05)
        self.seen = found + len(text)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.read(0.05)
        self.read(0.1)
        return self.process.wait(timeout=1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
