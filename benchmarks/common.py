"""Shared parts of the benchmarks: server processes, CPU accounting and the load client.

The load client runs in worker processes started as ``python common.py worker ...``
so that its CPU time is not spent inside the benchmark's own process. Each
worker opens its share of the connections, prints ``ready``, waits for ``go`` on
its standard input, then runs a closed loop on every connection: send one text
message, wait for the echo, send the next. It writes its counts and latency
samples to a JSON file when it is done.

The client is a small WebSocket implementation on ``asyncio.Protocol`` rather
than the ``websockets`` client, because on a 2-core machine every microsecond
the client spends is taken from the server under test. It sends each client's
frame pre-masked with one random key per connection instead of a new key per
frame. RFC 6455 requires a fresh key per frame, but no server can tell the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ECHO_APP = REPO / "templates" / "echo" / "app.py"
PLAIN_ECHO_SERVER = BENCH_DIR / "plain_echo_server.py"

# A small JSON message, written compactly, so that the echo app's JSON parse
# and compact re-encode return exactly the bytes that were sent.
DEFAULT_PAYLOAD = b'{"n":12345,"text":"hello from the load client","type":"chat"}'
TOO_MANY_REQUESTS_PREFIX = b'{"message":"Too Many Requests"'

# Load client implementations: "lean" is LoadClient, "websockets" is LibraryLoadClient.
CLIENT_KINDS = ("lean", "websockets")
URL_LINE = re.compile(r"^wss?://\S+$")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that ``finally`` blocks stop the servers."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's ``main``; on Ctrl-C, exit with status 130 and no traceback.

    The servers are stopped by ``main``'s own ``with`` blocks before this
    catches the interrupt.
    """
    try:
        main()
    except KeyboardInterrupt:
        log("Interrupted; every server this benchmark started has been stopped.")
        sys.exit(130)


def log(message: str) -> None:
    """Print a progress line on standard error; standard output carries results."""
    print(message, file=sys.stderr, flush=True)


# Machine and software facts printed beside every result.


def system_info() -> dict[str, str]:
    info = {
        "cpus": str(os.cpu_count()),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    for package in ("websockets", "uvloop", "uvicorn", "watchfiles"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            info[package] = version(package)
    info["code"] = _code_version()
    return info


def _code_version() -> str:
    """Return the commit of the repository, marked when ampt_sandbox/ has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "ampt_sandbox"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {commit}" + (" with uncommitted changes in ampt_sandbox/" if changes else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe_system(info: dict[str, str]) -> str:
    versions = ", ".join(
        f"{name} {info[name]}" for name in ("websockets", "uvloop", "uvicorn", "watchfiles") if name in info
    )
    return (
        f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, {info['platform']}; {versions}. "
        f"Code: {info['code']}"
    )


# Statistics.


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of already sorted values (fraction in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# Processes.


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Return the ids of all processes below ``pid``, found through /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces; fields follow the last ')'.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def process_cpu_seconds(pid: int) -> float:
    """Return user plus system CPU seconds of one process, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of proc(5) are utime and stime; index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_cpu_seconds() -> float:
    """Return CPU seconds all CPUs spent running processes or stolen by the hypervisor, since boot.

    Interrupt and softirq time is left out: much of it is the loopback network
    traffic of the benchmark itself, which no process is charged for.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + steal) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds used by a process tree, per process, between two readings.

    Processes are tracked by id so that one that starts between readings
    (a replaced runtime) counts from zero and one that ends stops counting.
    """

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._start: dict[int, float] = {}

    def _read(self) -> dict[int, float]:
        pids = [self.root_pid, *descendants(self.root_pid)]
        return {pid: process_cpu_seconds(pid) for pid in pids}

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[int, float]:
        """Return the CPU seconds each process of the tree used since ``start``."""
        now = self._read()
        return {pid: seconds - self._start.get(pid, 0.0) for pid, seconds in now.items()}


class ServerProcess:
    """A server started in its own process group, ready once it prints its URL.

    ``stop`` sends SIGTERM to the server, waits for it to exit, then sends
    SIGKILL to whatever is left of its process group (a runtime child or a
    uvicorn worker), so nothing outlives the benchmark.
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        url: str | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.url = url
        self.process: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._url_found = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server; wait for its URL line unless ``url`` was given."""
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for stream, is_stdout in ((self.process.stdout, True), (self.process.stderr, False)):
            thread = threading.Thread(target=self._drain, args=(stream, is_stdout), daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.url is None:
            deadline = time.monotonic() + timeout
            while not self._url_found.wait(0.05):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{self.name} did not print its URL within {timeout:g} s "
                        f"(exit status {self.process.returncode}); its last output:\n" + "\n".join(self.output)
                    )
        return self

    def _drain(self, stream: Any, is_stdout: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.output.append(line)
            if is_stdout and self.url is None and URL_LINE.match(line):
                self.url = line
                self._url_found.set()

    def stop(self, timeout: float = 15.0) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not exit within {timeout:g} s of SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def sandbox_command(app: Path, data_dir: Path, *limit_args: str, reload: bool = False) -> list[str]:
    """Return the ``ampt-sandbox dev`` command line for ``app`` on a free port."""
    return [
        sys.executable, "-m", "ampt_sandbox", "dev", str(app),
        "--port", "0",
        "--data-dir", str(data_dir),
        *limit_args,
        "--log-level", "warning",
        "--reload" if reload else "--no-reload",
    ]


def plain_echo_command(loop: str) -> list[str]:
    return [sys.executable, str(PLAIN_ECHO_SERVER), "--loop", loop]


def check_sandbox_importable() -> None:
    """Exit with a message when ``ampt_sandbox`` cannot be imported by a child process."""
    result = subprocess.run(
        [sys.executable, "-c", "import ampt_sandbox.cli.main, ampt_sandbox.store, ampt_sandbox.runtime.main"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(
            f"Cannot import ampt_sandbox with {sys.executable}: {last_line}\n"
            "Run the benchmarks with the project's venv (.venv/bin/python) after installing it."
        )


# Load measurement, coordinated from the benchmark process.


@dataclass
class LoadResult:
    """Counts, latencies and CPU times of one measurement window, summed over all workers."""

    server: str
    clients: int
    workers: int
    seconds: float
    round_trips: int
    throttled: int
    unexpected: int
    closed: int
    latencies_us: list[float] = field(repr=False)
    server_cpu_seconds: float
    # The server's first process alone: the gateway for ampt-sandbox, whose
    # runtime child makes up the rest of server_cpu_seconds.
    server_main_cpu_seconds: float
    client_cpu_seconds: float
    # CPU used by everything else on the machine during the window, such as
    # other programs and the kernel's own threads. More than a few tenths of
    # a core means the round was disturbed.
    background_cpu_seconds: float

    @property
    def round_trips_per_second(self) -> float:
        return self.round_trips / self.seconds if self.seconds else 0.0

    @property
    def echoes_per_second(self) -> float:
        """Return replies per second that were the echo, not a throttle reply or an error."""
        echoes = self.round_trips - self.throttled - self.unexpected
        return echoes / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_us, 0.50) / 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_us, 0.99) / 1000

    @property
    def background_cores(self) -> float:
        return self.background_cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_us_per_round_trip(self) -> float:
        return self.server_cpu_seconds / self.round_trips * 1e6 if self.round_trips else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "clients": self.clients,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "round_trips": self.round_trips,
            "round_trips_per_second": round(self.round_trips_per_second, 1),
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "throttled": self.throttled,
            "unexpected": self.unexpected,
            "closed": self.closed,
            "server_cpu_seconds": round(self.server_cpu_seconds, 3),
            "server_cpu_us_per_round_trip": round(self.server_cpu_us_per_round_trip, 1),
            "server_main_cpu_us_per_round_trip": round(
                self.server_main_cpu_seconds / self.round_trips * 1e6 if self.round_trips else float("nan"), 1
            ),
            "client_cpu_seconds": round(self.client_cpu_seconds, 3),
            "background_cpu_seconds": round(self.background_cpu_seconds, 3),
        }


def default_workers(clients: int) -> int:
    """Return how many client processes to use: one for a single client, else two."""
    return 1 if clients == 1 else 2


def measure_load(
    server: ServerProcess,
    clients: int,
    *,
    workers: int,
    warmup: float,
    duration: float,
    payload: bytes = DEFAULT_PAYLOAD,
    client: str = "lean",
) -> LoadResult:
    """Run ``clients`` closed-loop clients against ``server`` and return what they measured.

    The clients are split over ``workers`` processes. The server's CPU time
    (its whole process tree) is read at the start and end of the measured
    window, after ``warmup`` seconds of the same load.
    """
    assert server.url is not None
    workers = max(1, min(workers, clients))
    shares = [clients // workers + (1 if index < clients % workers else 0) for index in range(workers)]
    processes: list[subprocess.Popen[str]] = []
    meter = CpuMeter(server.pid)
    report_dir = tempfile.TemporaryDirectory(prefix="bench-load-")
    report_paths = [Path(report_dir.name, f"worker-{index}.json") for index in range(len(shares))]
    try:
        for share, report_path in zip(shares, report_paths):
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable, str(Path(__file__).resolve()), "worker",
                        "--url", server.url,
                        "--clients", str(share),
                        "--warmup", str(warmup),
                        "--duration", str(duration),
                        "--payload", payload.decode("utf-8"),
                        "--report", str(report_path),
                        "--client", client,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a load worker for {server.name} failed to connect its clients: {line!r}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        time.sleep(warmup)
        meter.start()
        busy_start = machine_busy_cpu_seconds()
        time.sleep(duration)
        busy = machine_busy_cpu_seconds() - busy_start
        server_cpu = meter.stop()

        reports = []
        for process, report_path in zip(processes, report_paths):
            if process.wait(30) != 0 or not report_path.exists():
                raise RuntimeError(f"a load worker for {server.name} exited with status {process.returncode}")
            reports.append(json.loads(report_path.read_text()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        report_dir.cleanup()

    latencies = sorted(value for report in reports for value in report["latencies_us"])
    client_cpu = sum(report["cpu_seconds"] for report in reports)
    return LoadResult(
        server=server.name,
        clients=clients,
        workers=len(shares),
        # Each worker measures its own window; they start within milliseconds.
        seconds=median([report["seconds"] for report in reports]),
        round_trips=sum(report["round_trips"] for report in reports),
        throttled=sum(report["throttled"] for report in reports),
        unexpected=sum(report["unexpected"] for report in reports),
        closed=sum(report["closed"] for report in reports),
        latencies_us=latencies,
        server_cpu_seconds=sum(server_cpu.values()),
        server_main_cpu_seconds=server_cpu.get(server.pid, 0.0),
        client_cpu_seconds=client_cpu,
        background_cpu_seconds=max(0.0, busy - sum(server_cpu.values()) - client_cpu),
    )


def compare_servers(
    servers: Sequence[ServerProcess],
    client_counts: Sequence[int],
    *,
    rounds: int,
    warmup: float,
    duration: float,
    workers: int | None = None,
    max_background: float = 0.25,
    max_repeats: int = 2,
    client: str = "lean",
) -> dict[int, dict[str, list[LoadResult]]]:
    """Measure every server at every client count, ``rounds`` times, alternating servers.

    Each round measures all servers one after the other, and the order rotates
    from round to round, so that drift of the machine (other load, CPU clock)
    spreads over all of them. A round in which other programs used more than
    ``max_background`` cores during any measurement is run once more, and the
    second try is kept whatever its background load. At most ``max_repeats``
    rounds per client count are repeated, which bounds the run time on a busy
    machine. Returns results by client count, then server name.
    """
    results: dict[int, dict[str, list[LoadResult]]] = {}
    for clients in client_counts:
        by_server: dict[str, list[LoadResult]] = {server.name: [] for server in servers}
        repeats_left = max_repeats
        for round_index in range(rounds):
            shift = round_index % len(servers)
            order = [*servers[shift:], *servers[:shift]]
            for attempt in (1, 2):
                round_results = []
                for server in order:
                    result = measure_load(
                        server,
                        clients,
                        workers=workers or default_workers(clients),
                        warmup=warmup,
                        duration=duration,
                        client=client,
                    )
                    round_results.append(result)
                    log(
                        f"  clients={clients}, round {round_index + 1}/{rounds}, {server.name}: "
                        f"{result.round_trips_per_second:,.0f} round trips/s, p50 {result.p50_ms:.3f} ms, "
                        f"p99 {result.p99_ms:.3f} ms, server CPU {result.server_cpu_us_per_round_trip:.1f} us per "
                        f"round trip, background load {result.background_cores:.2f} cores"
                    )
                busiest = max(result.background_cores for result in round_results)
                if busiest <= max_background or attempt == 2 or repeats_left == 0:
                    break
                repeats_left -= 1
                log(f"  other programs used {busiest:.2f} cores during this round; running it again")
            for result in round_results:
                by_server[result.server].append(result)
        results[clients] = by_server
    return results


def format_list(values: Sequence[float], digits: int) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)


# The load worker: a minimal WebSocket client on asyncio.Protocol.


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """Encode one final client frame, masked with a random key."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return header + mask + masked


class WorkerStats:
    """Counters shared by all clients of one worker process."""

    def __init__(self) -> None:
        self.recording = False
        self.sending = True
        self.round_trips = 0
        self.throttled = 0
        self.unexpected = 0
        self.closed = 0
        self.latencies_ns: list[int] = []

    def record(self, reply: bytes, expected: bytes, sent_at: int) -> None:
        """Count one reply that arrived now for a message sent at ``sent_at`` (``perf_counter_ns``)."""
        if not self.recording:
            return
        self.round_trips += 1
        self.latencies_ns.append(time.perf_counter_ns() - sent_at)
        if reply != expected:
            if reply.startswith(TOO_MANY_REQUESTS_PREFIX):
                self.throttled += 1
            else:
                self.unexpected += 1


class LoadClient(asyncio.Protocol):
    """One WebSocket connection running send, wait for the echo, send again."""

    def __init__(self, host: str, port: int, path: str, payload: bytes, stats: WorkerStats) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.payload = payload
        self.frame = _client_frame(0x1, payload)
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.upgraded = False
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.idle: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.sent_at = 0
        self.close_sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = (
            f"GET {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.transport.write(request.encode("ascii"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.close_sent:
            self.stats.closed += 1
        for future in (self.opened, self.idle, self.lost):
            if not future.done():
                if future is self.opened:
                    future.set_exception(ConnectionError(f"connection closed during the handshake: {exc}"))
                else:
                    future.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._check_handshake(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
            if not self.upgraded:
                return
        self._read_frames()

    def _check_handshake(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        accept = base64.b64encode(hashlib.sha1((self.key + WEBSOCKET_GUID).encode()).digest()).decode()
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        if not lines[0].startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept:
            self.opened.set_exception(ConnectionError(f"handshake rejected: {lines[0]}"))
            assert self.transport is not None
            self.transport.close()
            return
        self.upgraded = True
        self.opened.set_result(None)

    def _read_frames(self) -> None:
        buffer = self.buffer
        offset = 0
        end = len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if end - start < 2:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if end - start < length:
                break
            payload = bytes(buffer[start : start + length])
            offset = start + length
            self._on_frame(first & 0x80, first & 0x0F, payload)
        if offset:
            del buffer[:offset]

    def _on_frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode in (0x0, 0x1, 0x2):
            if not fin:
                self.fragments.append(payload)
                return
            if self.fragments:
                payload = b"".join(self.fragments) + payload
                self.fragments.clear()
            self._on_message(payload)
        elif opcode == 0x8:
            if not self.close_sent and self.transport is not None:
                self.stats.closed += 1
                self.close_sent = True
                self.transport.write(_client_frame(0x8, payload[:2]))
        elif opcode == 0x9 and self.transport is not None:
            self.transport.write(_client_frame(0xA, payload))

    def _on_message(self, payload: bytes) -> None:
        self.stats.record(payload, self.payload, self.sent_at)
        if self.stats.sending:
            self.send()
        elif not self.idle.done():
            self.idle.set_result(None)

    def start(self) -> None:
        self.send()

    def send(self) -> None:
        if self.transport is None:
            return
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.frame)

    async def close(self, timeout: float = 2.0) -> None:
        if self.transport is not None and not self.close_sent:
            self.close_sent = True
            self.transport.write(_client_frame(0x8, (1000).to_bytes(2, "big")))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.lost), timeout)
        if self.transport is not None:
            self.transport.abort()


class LibraryLoadClient:
    """The same closed loop as ``LoadClient``, through the ``websockets`` library's client.

    It costs the worker about twice the CPU per round trip of ``LoadClient``
    (19 against 10 µs at 10 clients on the 2-CPU machine of README.md), and
    on 2 cores that CPU is taken from the server under test.
    """

    def __init__(self, websocket: Any, payload: bytes, stats: WorkerStats) -> None:
        self.websocket = websocket
        self.payload = payload
        self.stats = stats
        self.idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        text = self.payload.decode("utf-8")
        try:
            while self.stats.sending:
                sent_at = time.perf_counter_ns()
                await self.websocket.send(text)
                reply = await self.websocket.recv(decode=False)
                self.stats.record(reply, self.payload, sent_at)
        except ConnectionClosed:
            self.stats.closed += 1
        finally:
            self.idle.set_result(None)

    async def close(self) -> None:
        await self.websocket.close()


async def open_clients(url: str, clients: int, payload: bytes, stats: WorkerStats, kind: str) -> list[Any]:
    """Open ``clients`` connections of ``kind`` ("lean" or "websockets") and wait for their handshakes."""
    if kind == "websockets":
        from websockets.asyncio.client import connect

        websockets = [await connect(url, compression=None, ping_interval=None) for _ in range(clients)]
        return [LibraryLoadClient(websocket, payload, stats) for websocket in websockets]

    match = re.match(r"^ws://([^:/]+):(\d+)(/.*)?$", url)
    if match is None:
        raise ValueError(f"unsupported URL {url!r}; expected ws://HOST:PORT[/PATH]")
    host, port, path = match.group(1), int(match.group(2)), match.group(3) or "/"
    loop = asyncio.get_running_loop()
    connections: list[LoadClient] = []
    for _ in range(clients):
        _transport, client = await loop.create_connection(
            lambda: LoadClient(host, port, path, payload, stats), host, port
        )
        connections.append(client)
    await asyncio.wait_for(asyncio.gather(*(client.opened for client in connections)), 30)
    return connections


async def run_worker(
    url: str, clients: int, warmup: float, duration: float, payload: bytes, kind: str
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats = WorkerStats()
    connections = await open_clients(url, clients, payload, stats, kind)

    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)

    for client in connections:
        client.start()
    await asyncio.sleep(warmup)
    stats.recording = True
    cpu_start = time.process_time()
    started = time.perf_counter()
    await asyncio.sleep(duration)
    stats.recording = False
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_start
    stats.sending = False

    await asyncio.wait([client.idle for client in connections], timeout=5)
    await asyncio.gather(*(client.close() for client in connections))
    return {
        "seconds": seconds,
        "round_trips": stats.round_trips,
        "throttled": stats.throttled,
        "unexpected": stats.unexpected,
        "closed": stats.closed,
        "cpu_seconds": cpu_seconds,
        "latencies_us": [round(value / 1000, 1) for value in stats.latencies_ns],
    }


def use_uvloop() -> bool:
    """Install uvloop's event loop policy where uvloop is installed; return whether it was."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="common.py worker", description="Run load clients (used by the benchmarks).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True, help="seconds of load before measuring")
    parser.add_argument("--duration", type=float, required=True, help="seconds measured")
    parser.add_argument("--payload", default=DEFAULT_PAYLOAD.decode())
    parser.add_argument("--report", type=Path, required=True, help="JSON file to write the counts and latencies to")
    parser.add_argument("--client", choices=CLIENT_KINDS, default="lean", help="WebSocket client implementation")
    args = parser.parse_args(argv)
    use_uvloop()
    report = asyncio.run(
        run_worker(args.url, args.clients, args.warmup, args.duration, args.payload.encode(), args.client)
    )
    args.report.write_text(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2:])
    else:
        sys.exit("usage: python common.py worker --url URL --clients N --warmup S --duration S")
