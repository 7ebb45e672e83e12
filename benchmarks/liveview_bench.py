"""Live view benchmark: echo throughput of ``dev`` with the live view on, against off, in one run.

Three sandboxes serve the echo app with limits off (``--burst 0 --rate 0``):

- ``view on``: the live view, drawn into a pseudo-terminal of 120x40 that
  this script reads and throws away, at the default log level (info), so
  every message and send goes through the view's log;
- ``view off``: ``--no-tui`` at the same log level, plain lines to a pipe;
- ``view off, warning``: ``--no-tui --log-level warning``, no per-message log.

The rounds alternate the servers (common.py). For ``view on`` the script also
counts the redraws that reach the terminal, to check that they stay at ten a
second or fewer under load.

Progress goes to standard error; the results, as Markdown, to standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from common import (
    ECHO_APP,
    ServerProcess,
    check_sandbox_importable,
    compare_servers,
    describe_system,
    exit_on_sigterm,
    format_list,
    log,
    median,
    system_info,
)

# Rich starts each frame in the alternate screen with "cursor home".
FRAME_START = b"\x1b[H"


class TerminalSandbox:
    """``ampt-sandbox dev`` with its standard output and error on a pseudo-terminal.

    The live view prints no URL line, so the URL comes from the state file.
    """

    def __init__(self, name: str, data_dir: Path, columns: int = 120, rows: int = 40) -> None:
        self.name = name
        self.data_dir = data_dir
        self.columns = columns
        self.rows = rows
        self.url: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        # When each frame reached the terminal (time.monotonic()).
        self.frame_times: list[float] = []
        self._master = -1
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> TerminalSandbox:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.columns, 0, 0))
        command = [
            sys.executable, "-m", "ampt_sandbox", "dev", str(ECHO_APP), "--port", "0",
            "--data-dir", str(self.data_dir), "--burst", "0", "--rate", "0", "--no-reload",
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, start_new_session=True,
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": str(self.columns), "LINES": str(self.rows)},
        )
        os.close(slave)
        self._master = master
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        state_file = self.data_dir / "sandbox.json"
        deadline = time.monotonic() + 30
        while self.url is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not write {state_file} within 30 s")
            with contextlib.suppress(FileNotFoundError, ValueError):
                self.url = json.loads(state_file.read_text())["url"]
            time.sleep(0.05)
        # The state file appears before the app has loaded; wait for the
        # import, which takes well under a second for the echo app.
        time.sleep(1.0)
        return self

    def _drain(self) -> None:
        tail = b""
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            # A frame marker may be split between two reads.
            now = time.monotonic()
            self.frame_times.extend([now] * (tail + chunk).count(FRAME_START))
            tail = chunk[-(len(FRAME_START) - 1) :]

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not exit within 15 s of SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
        os.close(self._master)


def plain_command(data_dir: Path, level: str) -> list[str]:
    return [
        sys.executable, "-m", "ampt_sandbox", "dev", str(ECHO_APP), "--port", "0", "--data-dir", str(data_dir),
        "--burst", "0", "--rate", "0", "--no-reload", "--no-tui", "--log-level", level,
    ]


def max_per_second(times: list[float]) -> int:
    """Return the largest number of ``times`` that fall within one second of each other."""
    best = start = 0
    for end, time_at_end in enumerate(times):
        while time_at_end - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def background_load(runs: list) -> str:
    # Older versions of common.py do not measure it.
    loads = [getattr(run, "background_cores", None) for run in runs]
    return "n/a" if None in loads else f"{max(loads):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,10", help="comma-separated client counts (default: 1,10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per client count (default: 3)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per server and round (default: 3)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before each measurement (default: 0.5)")
    args = parser.parse_args()
    exit_on_sigterm()
    check_sandbox_importable()
    client_counts = [int(count) for count in args.clients.split(",")]
    info = system_info()

    with tempfile.TemporaryDirectory(prefix="liveview-bench-") as temporary, contextlib.ExitStack() as stack:
        root = Path(temporary)
        terminal = stack.enter_context(TerminalSandbox("view on", root / "on"))
        servers = [
            terminal,
            stack.enter_context(ServerProcess("view off", plain_command(root / "off", "info"))),
            stack.enter_context(ServerProcess("view off, warning", plain_command(root / "quiet", "warning"))),
        ]
        for server in servers:
            log(f"Started {server.name} at {server.url}")
        first_frame = len(terminal.frame_times)
        results = compare_servers(servers, client_counts, rounds=args.rounds, warmup=args.warmup, duration=args.duration)
        frame_times = terminal.frame_times[first_frame:]

    lines = [
        f"Machine: {describe_system(info)}.",
        "",
        f"Command: `{' '.join(['.venv/bin/python benchmarks/liveview_bench.py', *sys.argv[1:]])}`",
        "",
        "Medians over the rounds, except round trips per second, also shown per round. Background load is",
        "the CPU that other programs used during the measured windows, the highest round shown.",
        "",
        "| clients | server | round trips/s per round | median | p50 ms | p99 ms | server CPU µs per round trip "
        "| background load (cores) |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for clients, by_server in results.items():
        for name, runs in by_server.items():
            rates = [run.round_trips_per_second for run in runs]
            lines.append(
                f"| {clients} | {name} | {format_list(rates, 0)} | {median(rates):,.0f} "
                f"| {median([run.p50_ms for run in runs]):.3f} | {median([run.p99_ms for run in runs]):.3f} "
                f"| {median([run.server_cpu_us_per_round_trip for run in runs]):.0f} | {background_load(runs)} |"
            )
    lines += ["", "| clients | view on / view off, per round | median |", "|---:|---|---:|"]
    for clients, by_server in results.items():
        ratios = [
            on.round_trips_per_second / off.round_trips_per_second
            for on, off in zip(by_server["view on"], by_server["view off"])
        ]
        lines.append(f"| {clients} | {format_list(ratios, 2)} | {median(ratios):.2f}× |")
    lines += [
        "",
        f"Redraws of the live view that reached the terminal: at most {max_per_second(frame_times)} "
        f"in any one second of the run ({len(frame_times)} in all).",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
