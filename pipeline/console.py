"""A readable console for kfp.local runs: one line per task with its status and time.

kfp.local prints every task's executor input, streamed logs and outputs (about a thousand lines a run).
``TaskConsole`` takes that stream instead of the terminal, keeps all of it in a log file, and prints one
line per finished task; a failed task also gets its log's last line (the error), and a task skipped after
a failure says so."""

from __future__ import annotations

import io
import logging
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
SKIPPED = re.compile(r"Skipping task ([\w-]+): (upstream .*)")


class TaskConsole(io.TextIOBase):
    """A text stream for ``contextlib.redirect_stdout``: everything goes to ``log_path``; the console
    ``out`` gets a line per task."""

    def __init__(self, log_path: Path, out: TextIO | None = None) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("w", encoding="utf-8", errors="replace")
        self._out = out or sys.stdout
        self._partial = ""
        self._started: dict[str, float] = {}
        self._last = ""  # the running task's last log line

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._log.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(ANSI.sub("", line))
        return len(text)

    def _line(self, line: str) -> None:
        if m := STARTED.search(line):
            self._started[m.group(1)] = time.perf_counter()
            self._last = ""
            return
        if m := FINISHED.search(line):
            task, status = m.groups()
            seconds = time.perf_counter() - self._started.get(task, time.perf_counter())
            print(f"  {task:<24} {status:<8} {seconds:7.1f} s", file=self._out, flush=True)
            if status != "SUCCESS" and self._last:
                print(f"    {self._last}", file=self._out, flush=True)
            return
        if m := SKIPPED.search(line):
            print(f"  {m.group(1):<24} SKIPPED  ({m.group(2)})", file=self._out, flush=True)
            return
        if line.strip() and not set(line.strip()) <= {"-"}:
            self._last = line.strip()

    def flush(self) -> None:
        if not self._log.closed:
            self._log.flush()

    def close(self) -> None:
        if self._partial:
            self._line(ANSI.sub("", self._partial))
            self._partial = ""
        super().close()
        self._log.close()


@contextmanager
def quiet_local_run(console: TaskConsole) -> Iterator[None]:
    """kfp.local's output, its root-logger messages (outside a task) and its local-runner warnings (a custom
    image, cluster settings that have no effect here) all go to ``console`` instead of the terminal."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [logging.StreamHandler(console)]
    try:
        with redirect_stdout(console), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(custom or non-Python base image|have no effect in the "
                                                      "current local runner)")
            yield
    finally:
        root.handlers = saved
