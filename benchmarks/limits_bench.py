"""Limits benchmark: echo throughput with the stage environment's limits against limits off.

Three ampt-sandbox processes serve the echo app at once and are measured in
rotating order, as in the relay benchmark:

- limits off (``--burst 0 --rate 0``);
- stage (``--env stage``): burst 5,000 invocations in flight, rate 10,000
  messages per second;
- stage with the rate raised to 1,000,000 per second
  (``--env stage --rate 1000000``): both limits are checked on every message,
  but the bucket never runs dry, so this isolates the cost of the checks.

Echo throughput counts replies that are the echo. A message over the rate
limit gets a "Too Many Requests" reply instead, which is counted apart.
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
    sandbox_command,
    system_info,
)

LIMITS_OFF = "limits off"
STAGE = "stage"
STAGE_HIGH_RATE = "stage, rate 1,000,000/s"
CONFIGURATIONS = {
    LIMITS_OFF: ("--burst", "0", "--rate", "0"),
    STAGE: ("--env", "stage"),
    STAGE_HIGH_RATE: ("--env", "stage", "--rate", "1000000"),
}
GOAL = 0.95  # stage echo throughput as a fraction of the same run with limits off


def render_markdown(results: dict[int, dict[str, list[LoadResult]]], command: str, info: dict[str, str]) -> str:
    lines = [
        f"Machine: {describe_system(info)}.",
        "",
        f"Command: `{command}`",
        "",
        "Medians over the rounds; background load is the highest round's, as in the relay table.",
        "",
        "| clients | configuration | echoes/s | throttled replies/s | p50 ms | p99 ms | server CPU µs per round trip | background load (cores) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, by_server in results.items():
        for name, runs in by_server.items():
            throttled = median([run.throttled / run.seconds for run in runs])
            lines.append(
                f"| {clients} | {name} | {median([run.echoes_per_second for run in runs]):,.0f} | {throttled:,.0f} "
                f"| {median([run.p50_ms for run in runs]):.3f} | {median([run.p99_ms for run in runs]):.3f} "
                f"| {median([run.server_cpu_us_per_round_trip for run in runs]):.0f} "
                f"| {max(run.background_cores for run in runs):.2f} |"
            )

    lines += [
        "",
        f"Echo throughput against limits off, per round and median. Goal: stage at least {GOAL:.2f}×.",
        "",
        "| clients | configuration | ratio per round | median | goal |",
        "|---:|---|---|---:|---|",
    ]
    for clients, by_server in results.items():
        for name in (STAGE, STAGE_HIGH_RATE):
            pairs = zip(by_server[name], by_server[LIMITS_OFF])
            ratios = [ours.echoes_per_second / theirs.echoes_per_second for ours, theirs in pairs]
            if name != STAGE:
                verdict = "(diagnostic)"
            elif median(ratios) >= GOAL:
                verdict = "met"
            else:
                verdict = "not met"
            lines.append(f"| {clients} | {name} | {format_list(ratios, 3)} | {median(ratios):.3f}× | {verdict} |")

    problems = [
        f"{name} at {clients} clients: {sum(run.unexpected for run in runs)} unexpected replies, "
        f"{sum(run.closed for run in runs)} connections closed"
        for clients, by_server in results.items()
        for name, runs in by_server.items()
        if any(run.unexpected or run.closed for run in runs)
    ]
    if problems:
        lines += ["", "Errors seen by the load client: " + "; ".join(problems) + "."]
    return "\n".join(lines)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,50", help="comma-separated client counts (default: 10,50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per client count (default: 3)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds measured per server and round (default: 1)")
    # The stage bucket refills while the other configurations are measured, so
    # each stage measurement starts with 10,000 spare tokens. The warm-up uses
    # them up, so that the measured window shows the sustained rate.
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds of load before each measurement (default: 1.5)")
    parser.add_argument(
        "--workers", type=int, default=None, help="load client processes (default: 1 for a single client, else 2)"
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    exit_on_sigterm()
    check_sandbox_importable()
    client_counts = [int(count) for count in args.clients.split(",")]
    info = system_info()

    with contextlib.ExitStack() as stack:
        servers = []
        for name, limit_args in CONFIGURATIONS.items():
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="limits-bench-")))
            server = ServerProcess(name, sandbox_command(ECHO_APP, data_dir, *limit_args))
            stack.enter_context(server)
            log(f"Started ampt-sandbox ({name}) at {server.url}")
            servers.append(server)
        results = compare_servers(
            servers, client_counts, rounds=args.rounds, warmup=args.warmup, duration=args.duration,
            workers=args.workers,
        )

    command = " ".join([".venv/bin/python benchmarks/limits_bench.py", *sys.argv[1:]])
    print(render_markdown(results, command, info))
    if args.json:
        records = {
            str(clients): {name: [run.summary() for run in runs] for name, runs in by_server.items()}
            for clients, by_server in results.items()
        }
        args.json.write_text(json.dumps({"system": info, "results": records}, indent=2) + "\n")


if __name__ == "__main__":
    run_main(main)
