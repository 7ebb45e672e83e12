"""Fixtures that run the real ``ampt-sandbox dev`` process and talk to it over sockets."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
URL_LINE = re.compile(r"^ws://\S+$")


class Sandbox:
    """A running ``ampt-sandbox dev`` process, its output collected by threads."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.cwd = cwd
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ampt_sandbox", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.stdout_lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, self.stderr_lines), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.url: str | None = None

    def _pump(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.stdout_lines + self.stderr_lines)

    def wait_for(self, pattern: str, timeout: float = 20.0, stream: str = "any") -> str:
        """Wait until a line matching ``pattern`` appears; return it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                pools = {
                    "stdout": self.stdout_lines,
                    "stderr": self.stderr_lines,
                    "any": self.stdout_lines + self.stderr_lines,
                }[stream]
                for line in pools:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output:\n{self.output}")
                if self.process.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise AssertionError(
                        f"sandbox exited with {self.process.returncode} before {pattern!r}; output:\n{self.output}"
                    )
                self._changed.wait(min(remaining, 0.2))

    async def expect(self, pattern: str, timeout: float = 20.0, stream: str = "any") -> str:
        """Like ``wait_for``, but lets the test's event loop run meanwhile."""
        return await asyncio.to_thread(self.wait_for, pattern, timeout, stream)

    def wait_count(self, pattern: str, count: int, timeout: float = 20.0) -> None:
        """Wait until ``count`` lines match ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for line in self.stdout_lines + self.stderr_lines if regex.search(line)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"fewer than {count} lines match {pattern!r}; output:\n{self.output}")
                self._changed.wait(min(remaining, 0.2))

    async def expect_count(self, pattern: str, count: int, timeout: float = 20.0) -> None:
        await asyncio.to_thread(self.wait_count, pattern, count, timeout)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.stdout_lines + self.stderr_lines if regex.search(line))

    def wait_url(self, timeout: float = 30.0) -> str:
        self.url = self.wait_for(URL_LINE.pattern, timeout, stream="stdout")
        return self.url

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for thread in self._threads:
            thread.join(5)
        return code


@pytest.fixture
def run_sandbox(tmp_path: Path) -> Iterator:
    """Start ``ampt-sandbox dev`` on an app given as source text or a template name."""
    started: list[Sandbox] = []

    def start(
        app_source: str | None = None,
        *extra: str,
        template: str | None = None,
        wait: bool = True,
        data_dir: Path | None = None,
        app_name: str = "app.py",
    ) -> Sandbox:
        app_dir = tmp_path / "app"
        app_dir.mkdir(exist_ok=True)
        app_path = app_dir / app_name
        if template is not None:
            app_path.write_text((TEMPLATES / template / "app.py").read_text())
        elif app_source is not None:
            app_path.write_text(textwrap.dedent(app_source))
        args = [
            "dev", str(app_path), "--port", "0",
            "--data-dir", str(data_dir or tmp_path / "data"),
            *extra,
        ]
        sandbox = Sandbox(args, cwd=tmp_path)
        sandbox.app_path = app_path
        started.append(sandbox)
        if wait:
            sandbox.wait_url()
        return sandbox

    yield start

    for sandbox in started:
        if sandbox.process.poll() is None:
            sandbox.stop(signal.SIGKILL)
