"""Scale benchmark: thousands of idle connections, ampt-sandbox against a plain websockets server.

For each server, in one run:

1. Start it (ampt-sandbox with ``--env stage``).
2. Measure round trips on 10 active connections: a handler call (the message
   comes back) and, for ampt-sandbox, a data operation (the handler runs
   ``data.set`` and ``data.get`` and returns how long they took).
3. Read the memory of the server's process tree (resident set, and the
   proportional set size that splits shared pages between processes).
4. Open the idle connections (5,000 in all by default) from holder processes,
   which reply to the servers' keepalive pings but send no message.
5. Read the memory again, and measure the same round trips again.
6. Close the idle connections, and repeat steps 2, 4 and 5 (``--repeats``).

Memory per connection is the growth between the two readings of the first
repeat divided by the number of idle connections. Round trips are the
median over the repeats. The goals: at most 2 times the plain server's
memory per connection, and no round trip slower than 2 times its figure at
10 connections (p50 and p99). Each measurement also records the CPU that
other programs used meanwhile, because a busy machine inflates p99.

The script raises its open-file limit (``resource.setrlimit``) to what the
connections need, up to the hard limit; the servers and holders inherit it.

Progress goes to standard error; the results, as Markdown, to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    CpuMeter,
    ServerProcess,
    check_sandbox_importable,
    descendants,
    describe_system,
    exit_on_sigterm,
    log,
    machine_busy_cpu_seconds,
    median,
    percentile,
    plain_echo_command,
    process_cpu_seconds,
    sandbox_command,
    system_info,
)

SANDBOX = "ampt-sandbox"
PLAIN = "websockets (uvloop)"
ACTIVE_CONNECTIONS = 10
MEMORY_GOAL = 2.0  # at most this many times the plain server's memory per connection
LATENCY_GOAL = 2.0  # at most this many times the round trip at 10 connections

# The app that ampt-sandbox serves. A "data" message runs one write and one
# read of the store, and the reply is their duration in microseconds as the
# runtime measured it. Any other message comes back unchanged.
BENCH_APP = '''
import time
from ampt_sandbox import data, ws

@ws.on("message")
async def message(connection, message):
    if message == "data":
        started = time.perf_counter()
        key = f"bench:{connection.connection_id}"
        await data.set(key, {"count": {"$add": 1}, "at": int(time.time() * 1000)})
        await data.get(key)
        await connection.send(f"{(time.perf_counter() - started) * 1e6:.1f}")
    else:
        await connection.send(message)
'''


# Holder processes: they open idle connections and keep them until stdin closes.


def hold_main(url: str, count: int, batch: int) -> None:
    """Open ``count`` connections, print ``ready``, and hold them until standard input closes."""
    from websockets.asyncio.client import connect

    async def run() -> None:
        connections = []
        for start in range(0, count, batch):
            size = min(batch, count - start)
            connections += await asyncio.gather(*(connect(url, open_timeout=60) for _ in range(size)))
        print(f"ready {len(connections)}", flush=True)
        # Standard input closes when the benchmark is done with this holder.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for connection in connections:
            connection.transport.abort()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


class Holders:
    """Holder processes that together keep ``count`` idle connections open."""

    def __init__(self, url: str, count: int, processes: int, batch: int) -> None:
        self.url = url
        self.count = count
        shares = [count // processes + (1 if index < count % processes else 0) for index in range(processes)]
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "hold", url, str(share), "--batch", str(batch)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for share in shares
            if share
        ]

    def wait_ready(self, timeout: float) -> float:
        """Wait until every holder has its connections open; return the seconds it took."""
        started = time.monotonic()
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if not line.startswith("ready"):
                raise RuntimeError(f"a holder process failed to open its connections (exit status {process.poll()})")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the holders took more than {timeout:g} s to connect")
        return time.monotonic() - started

    def close(self) -> None:
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# Memory.


def tree_memory_kib(root_pid: int) -> tuple[int, int]:
    """Return the resident set and the proportional set size of a process tree, in KiB."""
    rss = pss = 0
    for pid in [root_pid, *descendants(root_pid)]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        rss += _field_kib(status, "VmRSS:")
        pss += _field_kib(rollup, "Pss:")
    return rss, pss


def _field_kib(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return 0


def settled_memory(root_pid: int, max_seconds: float = 20.0) -> tuple[int, int]:
    """Read the tree's memory once it stops growing: two readings 0.5 s apart within 0.5 %."""
    previous = tree_memory_kib(root_pid)
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = tree_memory_kib(root_pid)
        if abs(current[0] - previous[0]) <= 0.005 * previous[0]:
            return current
        previous = current
    return previous


# Round trips on the active connections.


@dataclass
class Latency:
    """Round-trip samples of one operation in one measurement, in microseconds."""

    round_trips_us: list[float] = field(default_factory=list)
    # For the data operation: its duration measured inside the runtime.
    server_us: list[float] = field(default_factory=list)
    # CPU cores that other programs used during the measurement.
    background_cores: float = 0.0
    # CPU seconds of the server's process tree during the measurement.
    server_cpu_seconds: float = 0.0

    @property
    def server_cpu_us_per_round_trip(self) -> float:
        return self.server_cpu_seconds / len(self.round_trips_us) * 1e6

    def p(self, fraction: float, server_side: bool = False) -> float:
        """Return a percentile in milliseconds."""
        values = sorted(self.server_us if server_side else self.round_trips_us)
        return percentile(values, fraction) / 1000


async def measure_round_trips(url: str, message: str, round_trips: int, warmup: int) -> Latency:
    """Run closed-loop round trips on each of the active connections at once."""
    from websockets.asyncio.client import connect

    latency = Latency()

    async def one_connection() -> None:
        async with connect(url, open_timeout=60) as websocket:
            for index in range(warmup + round_trips):
                started = time.perf_counter()
                await websocket.send(message)
                reply = await asyncio.wait_for(websocket.recv(), 30)
                elapsed = (time.perf_counter() - started) * 1e6
                if index < warmup:
                    continue
                latency.round_trips_us.append(elapsed)
                if message == "data":
                    latency.server_us.append(float(reply))
                elif reply != message:
                    raise RuntimeError(f"unexpected reply {reply!r} to {message!r}")

    await asyncio.gather(*(one_connection() for _ in range(ACTIVE_CONNECTIONS)))
    return latency


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_until_quiet(pid: int, max_seconds: float = 30.0) -> None:
    """Wait until the server's tree uses under 5 % of a core, so that cleanup after the idle connections is over."""
    meter = CpuMeter(pid)
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        meter.start()
        time.sleep(0.5)
        if sum(meter.stop().values()) < 0.05 * 0.5:
            return
    log(f"    the server still used CPU after {max_seconds:g} s of waiting; measuring anyway")


def measure_with_background(server: ServerProcess, holders: Holders | None, operation: str, args) -> Latency:
    """Measure one operation and the CPU that programs other than the benchmark's used meanwhile."""
    wait_until_quiet(server.pid)
    meter = CpuMeter(server.pid)
    holder_pids = [] if holders is None else [process.pid for process in holders.processes]
    started_at = time.monotonic()
    busy_start = machine_busy_cpu_seconds()
    own_start = own_cpu_seconds()
    holders_start = sum(process_cpu_seconds(pid) for pid in holder_pids)
    meter.start()
    latency = asyncio.run(measure_round_trips(server.url, operation, args.round_trips, args.warmup))
    server_cpu = sum(meter.stop().values())
    ours = own_cpu_seconds() - own_start + sum(process_cpu_seconds(pid) for pid in holder_pids) - holders_start
    busy = machine_busy_cpu_seconds() - busy_start
    latency.background_cores = max(0.0, busy - server_cpu - ours) / (time.monotonic() - started_at)
    latency.server_cpu_seconds = server_cpu
    return latency


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_descriptors(pid: int, at_most: int, timeout: float = 120.0) -> None:
    """Wait until the server has closed the idle connections' sockets."""
    deadline = time.monotonic() + timeout
    while open_descriptors(pid) > at_most:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server still has {open_descriptors(pid)} descriptors open after {timeout:g} s")
        time.sleep(0.2)


# One server, measured.


@dataclass
class ServerResult:
    name: str
    idle: int
    connect_seconds: float
    memory_before_kib: tuple[int, int]
    memory_after_kib: tuple[int, int]
    # Operation, then connection count, then one Latency per repeat.
    latency: dict[str, dict[int, list[Latency]]]

    def per_connection_kib(self, index: int) -> float:
        return (self.memory_after_kib[index] - self.memory_before_kib[index]) / self.idle


def measure_server(server: ServerProcess, operations: list[str], args: argparse.Namespace) -> ServerResult:
    """Measure memory once, and round trips at 10 and at all connections in each repeat.

    Memory grows only on the first repeat: a Python process keeps the memory
    it freed, so later repeats reuse it.
    """
    assert server.url is not None
    idle = args.connections - ACTIVE_CONNECTIONS
    latency: dict[str, dict[int, list[Latency]]] = {
        operation: {ACTIVE_CONNECTIONS: [], args.connections: []} for operation in operations
    }
    descriptors_at_start = open_descriptors(server.pid)

    def run_latency(connections: int, holders: Holders | None) -> None:
        for operation in operations:
            result = measure_with_background(server, holders, operation, args)
            latency[operation][connections].append(result)
            log(
                f"    {operation} with {connections} connections open: p50 {result.p(0.5):.3f} ms, "
                f"p99 {result.p(0.99):.3f} ms, server CPU {result.server_cpu_us_per_round_trip:.0f} us per "
                f"round trip, background load {result.background_cores:.2f} cores"
            )

    for repeat in range(args.repeats):
        log(f"  {server.name}, repeat {repeat + 1}/{args.repeats}:")
        run_latency(ACTIVE_CONNECTIONS, None)
        if repeat == 0:
            before = settled_memory(server.pid)
            log(f"    {before[0] / 1024:.1f} MiB resident before the idle connections")
        holders = Holders(server.url, idle, args.holders, args.batch)
        try:
            seconds = holders.wait_ready(timeout=300)
            log(f"    {idle} idle connections open in {seconds:.1f} s")
            if repeat == 0:
                connect_seconds = seconds
                after = settled_memory(server.pid)
                log(f"    {after[0] / 1024:.1f} MiB resident with {args.connections} connections")
            run_latency(args.connections, holders)
        finally:
            holders.close()
        wait_for_descriptors(server.pid, descriptors_at_start + ACTIVE_CONNECTIONS)
    return ServerResult(server.name, idle, connect_seconds, before, after, latency)


def raise_open_file_limit(needed: int) -> str:
    """Raise the soft open-file limit to ``needed`` (up to the hard limit); return what was done."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return f"open-file limit {soft} already enough"
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log(f"warning: the open-file hard limit is {hard}, below the {needed} this run needs")
    return f"open-file limit raised from {soft} to {target}"


# Report.


def render_markdown(
    results: list[ServerResult], args: argparse.Namespace, command: str, info: dict[str, str], limit_note: str
) -> str:
    sandbox = next(result for result in results if result.name == SANDBOX)
    plain = next(result for result in results if result.name == PLAIN)
    lines = [
        f"Machine: {describe_system(info)}.",
        "",
        f"Command: `{command}` ({limit_note}).",
        "",
        *memory_table(results, args),
        "",
    ]
    latency_lines, worst_sandbox_ratio = latency_table(results, args)
    lines += latency_lines
    rss_ratio = sandbox.per_connection_kib(0) / plain.per_connection_kib(0)
    pss_ratio = sandbox.per_connection_kib(1) / plain.per_connection_kib(1)
    lines += [
        "",
        "Against the goals:",
        f"- Memory per connection: {rss_ratio:.2f} times the plain server's by RSS, {pss_ratio:.2f} by PSS "
        f"(goal: at most {MEMORY_GOAL:g}).",
        f"- Slowest change of an ampt-sandbox round trip from {ACTIVE_CONNECTIONS} to {args.connections:,} "
        f"connections: {worst_sandbox_ratio:.2f} times (goal: at most {LATENCY_GOAL:g}).",
    ]
    return "\n".join(lines) + "\n"


def memory_table(results: list[ServerResult], args: argparse.Namespace) -> list[str]:
    lines = [
        f"Memory of each server's process tree with {ACTIVE_CONNECTIONS} connections, then with "
        f"{args.connections:,} (the rest idle).",
        "ampt-sandbox's tree is the gateway, the runtime and its warm spare. RSS counts shared pages",
        "in every process, and PSS splits them between the processes that share them.",
        "",
        "| server | RSS before MiB | RSS after MiB | RSS per connection KiB | PSS per connection KiB "
        "| idle connections opened in s |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| {result.name} | {result.memory_before_kib[0] / 1024:.1f} | {result.memory_after_kib[0] / 1024:.1f} "
            f"| {result.per_connection_kib(0):.1f} | {result.per_connection_kib(1):.1f} | {result.connect_seconds:.1f} |"
        )
    return lines


def latency_table(results: list[ServerResult], args: argparse.Namespace) -> tuple[list[str], float]:
    """Return the round-trip table, and ampt-sandbox's worst ratio of a figure at all connections to 10."""
    lines = [
        f"Round trips on {ACTIVE_CONNECTIONS} active connections at once, {args.round_trips} each after "
        f"{args.warmup} of warm-up,",
        f"first with no other connection open, then with the idle ones; the median over {args.repeats} repeats.",
        "\"data\" is a message whose handler runs `data.set` and `data.get`, and \"in the runtime\" is",
        "the time of those two calls measured inside the handler. Server CPU is the CPU time of the",
        "server's process tree per round trip, keepalive pings of the idle connections included.",
        "",
        f"| server | operation | p50 ms at {ACTIVE_CONNECTIONS} | p50 ms at {args.connections:,} | p99 ms at "
        f"{ACTIVE_CONNECTIONS} | p99 ms at {args.connections:,} | worst ratio | server CPU µs at "
        f"{ACTIVE_CONNECTIONS} | server CPU µs at {args.connections:,} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    worst_sandbox_ratio = 0.0
    busiest = 0.0
    for result in results:
        for operation, by_count in result.latency.items():
            rows = [(operation, False)]
            if operation == "data":
                rows.append(("data, in the runtime", True))
            for label, server_side in rows:
                small, large = by_count[ACTIVE_CONNECTIONS], by_count[args.connections]
                p50 = (_median_p(small, 0.5, server_side), _median_p(large, 0.5, server_side))
                p99 = (_median_p(small, 0.99, server_side), _median_p(large, 0.99, server_side))
                ratio = max(p50[1] / p50[0], p99[1] / p99[0])
                if result.name == SANDBOX:
                    worst_sandbox_ratio = max(worst_sandbox_ratio, ratio)
                busiest = max(busiest, *(latency.background_cores for latency in small + large))
                cpu = (
                    median([latency.server_cpu_us_per_round_trip for latency in small]),
                    median([latency.server_cpu_us_per_round_trip for latency in large]),
                )
                cpu_cells = "| - | - |" if server_side else f"| {cpu[0]:.0f} | {cpu[1]:.0f} |"
                lines.append(
                    f"| {result.name} | {label} | {p50[0]:.3f} | {p50[1]:.3f} | {p99[0]:.3f} | {p99[1]:.3f} "
                    f"| {ratio:.2f} {cpu_cells}"
                )
    lines += ["", f"Other programs used at most {busiest:.2f} cores during any of these measurements."]
    return lines, worst_sandbox_ratio


def _median_p(latencies: list[Latency], fraction: float, server_side: bool) -> float:
    return median([latency.p(fraction, server_side) for latency in latencies])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000, help="connections held in all, the active ones included")
    parser.add_argument("--round-trips", type=int, default=500, help="measured round trips per active connection")
    parser.add_argument("--repeats", type=int, default=3, help="measurements at each connection count")
    parser.add_argument("--warmup", type=int, default=50, help="round trips per active connection before measuring")
    parser.add_argument("--holders", type=int, default=2, help="processes that hold the idle connections")
    parser.add_argument("--batch", type=int, default=200, help="connections each holder opens at once")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = parser.parse_args()
    if args.connections <= ACTIVE_CONNECTIONS:
        parser.error(f"--connections must be more than the {ACTIVE_CONNECTIONS} active ones")

    exit_on_sigterm()
    check_sandbox_importable()
    # The servers and holders inherit the limit. A server has a descriptor
    # for each connection, and the margin covers its other files.
    limit_note = raise_open_file_limit(args.connections + 1024)
    log(limit_note)
    info = system_info()

    results: list[ServerResult] = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as folder:
        app = Path(folder, "app.py")
        app.write_text(textwrap.dedent(BENCH_APP))
        servers = [
            (ServerProcess(SANDBOX, sandbox_command(app, Path(folder, "data"), "--env", "stage")), ["echo", "data"]),
            (ServerProcess(PLAIN, plain_echo_command("uvloop")), ["echo"]),
        ]
        for server, operations in servers:
            log(f"{server.name}:")
            with server:
                results.append(measure_server(server, operations, args))

    if args.json is not None:
        args.json.write_text(json.dumps([_summary(result) for result in results], indent=2) + "\n")
    command = " ".join(["python benchmarks/scale_bench.py", *sys.argv[1:]])
    print(render_markdown(results, args, command, info, limit_note), end="")


def _summary(result: ServerResult) -> dict[str, object]:
    return {
        "server": result.name,
        "idle": result.idle,
        "connect_seconds": round(result.connect_seconds, 2),
        "memory_before_kib": {"rss": result.memory_before_kib[0], "pss": result.memory_before_kib[1]},
        "memory_after_kib": {"rss": result.memory_after_kib[0], "pss": result.memory_after_kib[1]},
        "latency_ms": {
            operation: {
                str(count): [{"p50": latency.p(0.5), "p99": latency.p(0.99)} for latency in latencies]
                for count, latencies in by_count.items()
            }
            for operation, by_count in result.latency.items()
        },
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "hold":
        hold_parser = argparse.ArgumentParser(description="Hold idle connections until standard input closes.")
        hold_parser.add_argument("command")
        hold_parser.add_argument("url")
        hold_parser.add_argument("count", type=int)
        hold_parser.add_argument("--batch", type=int, default=200)
        hold_args = hold_parser.parse_args()
        hold_main(hold_args.url, hold_args.count, hold_args.batch)
    else:
        main()
