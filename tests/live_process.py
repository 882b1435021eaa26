"""A ``python main.py live`` process as a user starts it, read line by line in the
background, so tests wait for what it says (never for a number of seconds)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.day import SETTINGS_YAML, STRATEGIES

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 120.0
"""Generous: a busy 2-core machine starts a Python process with pandas in many seconds."""


def write_settings(folder: Path, **live: Any) -> Path:
    """The day's settings with extra ``live`` keys (e.g. ``lease_heartbeat_s``)."""
    data = yaml.safe_load(SETTINGS_YAML)
    data["live"].update(live)
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class Bot:
    """One bot process; its stdout and stderr merged into :attr:`lines`."""

    def __init__(self, args: list[str], env: dict[str, str], settings: Path):
        command = [
            sys.executable,
            "main.py",
            "--settings",
            str(settings),
            "--strategies-dir",
            str(STRATEGIES),
            "-v",
            *args,
        ]
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)
        self._new.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, *texts: str, timeout_s: float = WAIT_S) -> str:
        """Block until a line containing one of ``texts`` arrives; the line. Fails if the
        process ends first or nothing comes within ``timeout_s``."""
        for line in self.lines:
            if any(text in line for text in texts):
                return line
        while True:
            try:
                line = self._new.get(timeout=timeout_s)
            except queue.Empty:
                message = f"no line with {texts!r} in {timeout_s} s:\n{self.tail()}"
                raise AssertionError(message) from None
            if line is None:
                raise AssertionError(f"ended ({self.proc.poll()}) before {texts!r}:\n{self.tail()}")
            if any(text in line for text in texts):
                return line.rstrip("\n")

    def wait(self, timeout_s: float = WAIT_S) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=timeout_s)
        return code

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
