"""Relay benchmark: the echo app through ampt-sandbox against a plain websockets echo server.

All servers run for the whole benchmark. Each round measures every server
with fresh connections from the same load client (common.py), and the order
of the servers rotates from round to round. Ratios are taken within a round and the
median over rounds is reported. ampt-sandbox runs with limits off
(``--burst 0 --rate 0``). Its gateway and runtime use uvloop, so the main
baseline is the plain server on uvloop. ``--baselines uvloop,asyncio`` adds the
plain server on the standard asyncio loop.

Progress goes to standard error; the results, as Markdown, to standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

from common import (
    CLIENT_KINDS,
    ECHO_APP,
    LoadResult,
    ServerProcess,
    check_sandbox_importable,
    compare_servers,
    describe_system,
    exit_on_sigterm,
    format_list,
    log,
    median,
    run_main,
    plain_echo_command,
    sandbox_command,
    system_info,
)

SANDBOX = "ampt-sandbox"
THROUGHPUT_GOAL = 0.7  # at least this fraction of the plain server's round trips per second
ADDED_P50_GOAL_MS = 0.5  # at most this much added median latency at 1 client


def baseline_name(loop: str) -> str:
    return f"websockets ({loop})"


def render_markdown(
    results: dict[int, dict[str, list[LoadResult]]], baselines: list[str], command: str, info: dict[str, str]
) -> str:
    main_baseline = baseline_name(baselines[0])
    lines = [
        f"Machine: {describe_system(info)}.",
        "",
        f"Command: `{command}`",
        "",
        "Medians over the rounds. Server CPU is the whole process tree (for ampt-sandbox, the gateway's",
        "share in brackets, the runtime has the rest). Background load is the CPU used by other programs",
        "during the measured windows, the highest round shown: above 0.25 cores, a round was disturbed.",
        "",
        "| clients | server | round trips/s | p50 ms | p99 ms | server CPU µs per round trip | background load (cores) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for clients, by_server in results.items():
        for name, runs in by_server.items():
            cpu = f"{median([run.server_cpu_us_per_round_trip for run in runs]):.0f}"
            if name == SANDBOX:
                gateway = median([run.server_main_cpu_seconds / run.round_trips * 1e6 for run in runs])
                cpu += f" ({gateway:.0f})"
            lines.append(
                f"| {clients} | {name} | {median([run.round_trips_per_second for run in runs]):,.0f} "
                f"| {median([run.p50_ms for run in runs]):.3f} | {median([run.p99_ms for run in runs]):.3f} | {cpu} "
                f"| {max(run.background_cores for run in runs):.2f} |"
            )

    lines += [
        "",
        f"Against {main_baseline}, per round and median. Goals: throughput at least "
        f"{THROUGHPUT_GOAL:.2f}×, added p50 at most {ADDED_P50_GOAL_MS} ms at 1 client.",
        "",
        "| clients | throughput ratio per round | median | added p50 per round (ms) | median | goals |",
        "|---:|---|---:|---|---:|---|",
    ]
    for clients, by_server in results.items():
        pairs = list(zip(by_server[SANDBOX], by_server[main_baseline]))
        ratios = [ours.round_trips_per_second / theirs.round_trips_per_second for ours, theirs in pairs]
        added = [ours.p50_ms - theirs.p50_ms for ours, theirs in pairs]
        verdicts = ["throughput " + ("met" if median(ratios) >= THROUGHPUT_GOAL else "not met")]
        if clients == 1:
            verdicts.append("p50 " + ("met" if median(added) <= ADDED_P50_GOAL_MS else "not met"))
        lines.append(
            f"| {clients} | {format_list(ratios, 2)} | {median(ratios):.2f}× | {format_list(added, 3)} "
            f"| {median(added):+.3f} | {', '.join(verdicts)} |"
        )
    problems = [
        f"{name} at {clients} clients: {sum(run.unexpected for run in runs)} unexpected replies, "
        f"{sum(run.closed for run in runs)} connections closed"
        for clients, by_server in results.items()
        for name, runs in by_server.items()
        if any(run.unexpected or run.closed or run.throttled for run in runs)
    ]
    if problems:
        lines += ["", "Errors seen by the load client: " + "; ".join(problems) + "."]
    return "\n".join(lines)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,10,50", help="comma-separated client counts (default: 1,10,50)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per client count (default: 5)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds measured per server and round (default: 1)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before each measurement (default: 0.5)")
    parser.add_argument(
        "--workers", type=int, default=None,
        help="load client processes (default: 1 for a single client, else 2)",
    )
    parser.add_argument(
        "--baselines", default="uvloop",
        help="event loops of the plain websockets server, comma-separated, the first one the reference "
        "for the ratios: uvloop, asyncio (default: uvloop)",
    )
    parser.add_argument(
        "--client", choices=CLIENT_KINDS, default="lean",
        help="load client: lean (a minimal client, the default) or websockets (the library's client, "
        "which takes more CPU from the servers)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    exit_on_sigterm()
    check_sandbox_importable()
    baselines = [loop.strip() for loop in args.baselines.split(",") if loop.strip()]
    if not baselines or any(loop not in ("uvloop", "asyncio") for loop in baselines):
        sys.exit(f"--baselines must list uvloop and/or asyncio, got {args.baselines!r}")
    client_counts = [int(count) for count in args.clients.split(",")]
    info = system_info()

    with tempfile.TemporaryDirectory(prefix="relay-bench-") as data_dir, contextlib.ExitStack() as stack:
        servers = [
            ServerProcess(SANDBOX, sandbox_command(ECHO_APP, Path(data_dir), "--burst", "0", "--rate", "0")),
            *(ServerProcess(baseline_name(loop), plain_echo_command(loop)) for loop in baselines),
        ]
        for server in servers:
            stack.enter_context(server)
            log(f"Started {server.name} at {server.url}")
        results = compare_servers(
            servers, client_counts, rounds=args.rounds, warmup=args.warmup, duration=args.duration,
            workers=args.workers, client=args.client,
        )

    command = " ".join([".venv/bin/python benchmarks/relay_bench.py", *sys.argv[1:]])
    print(render_markdown(results, baselines, command, info))
    if args.json:
        records = {
            str(clients): {name: [run.summary() for run in runs] for name, runs in by_server.items()}
            for clients, by_server in results.items()
        }
        args.json.write_text(json.dumps({"system": info, "results": records}, indent=2) + "\n")


if __name__ == "__main__":
    run_main(main)
