"""Reload benchmark: from saving the app file to the first reply from the new code.

ampt-sandbox (``dev --reload``) and ``uvicorn --reload`` serve the same probe
app (reload_apps/) from copies in temporary folders. For each server, one
client stays connected and sends a probe message every 2 ms, and the app
replies with its VERSION string. Each edit rewrites VERSION in the file, and
the time from the end of the write to the first reply carrying the new
version is recorded. A client whose connection closes reconnects at once, and
every close counts as a dropped connection. The two servers are edited in
turns, alternating which goes first, with a pause after each edit so that
neither is still busy from its previous reload.

Progress goes to standard error; the results, as Markdown, to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from common import (
    BENCH_DIR,
    ServerProcess,
    check_sandbox_importable,
    describe_system,
    exit_on_sigterm,
    format_list,
    free_port,
    log,
    median,
    run_main,
    percentile,
    sandbox_command,
    system_info,
)

SANDBOX = "ampt-sandbox"
UVICORN = "uvicorn --reload"
PROBE_INTERVAL = 0.002  # seconds between probe messages
EDIT_TIMEOUT = 15.0  # an edit whose new version does not reply within this many seconds counts as failed
CONNECT_TIMEOUT = 30.0
VERSION_LINE = re.compile(r'^VERSION = ".*"$', re.MULTILINE)
RATIO_GOAL = 0.5  # ampt-sandbox's median time at most this fraction of uvicorn's


class ProbeClient:
    """One connection kept open to a server, probing it and noting every version it replies with.

    A closed connection is opened again at once. Closes that the client did
    not ask for are counted as dropped connections, with their close codes.
    """

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.drops = 0
        self.close_codes: list[int | None] = []
        self.failed_connects = 0
        self.connected = asyncio.Event()
        self.stopping = False
        self._waiters: dict[str, asyncio.Future[float]] = {}

    def expect(self, version: str) -> asyncio.Future[float]:
        """Return a future set to the ``perf_counter`` time of the first reply equal to ``version``."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[version] = future
        return future

    async def run(self) -> None:
        while not self.stopping:
            try:
                websocket = await connect(self.url, open_timeout=10, compression=None, ping_interval=None)
            except (OSError, TimeoutError, InvalidHandshake):
                self.failed_connects += 1
                await asyncio.sleep(PROBE_INTERVAL)
                continue
            self.connected.set()
            sender = asyncio.create_task(self._probe(websocket))
            try:
                async for reply in websocket:
                    waiter = self._waiters.pop(str(reply), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(time.perf_counter())
            except ConnectionClosed:
                pass
            finally:
                self.connected.clear()
                sender.cancel()
            if not self.stopping:
                self.drops += 1
                self.close_codes.append(websocket.close_code)
                log(f"    {self.name}: connection dropped with close code {websocket.close_code}; reconnecting")
            await websocket.close()

    async def _probe(self, websocket: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await websocket.send("probe")
                await asyncio.sleep(PROBE_INTERVAL)


def render_app(template: str, version: str, edit_number: int) -> str:
    """Return the app source with ``version`` in its VERSION line.

    A trailing comment grows by one character per edit, so that every save
    changes the file size. Python's bytecode cache checks only the size and
    the modification time in whole seconds, so without this uvicorn's new
    worker could import a stale cached version.
    """
    text = VERSION_LINE.sub(f'VERSION = "{version}"', template)
    return text + f"# edit {edit_number} " + "-" * edit_number + "\n"


async def edit_and_wait(app_file: Path, template: str, edit_number: int, probe: ProbeClient) -> float | None:
    """Save a new version of ``app_file``; return seconds until the first reply from it, or None."""
    version = f"v{edit_number}"
    reply = probe.expect(version)
    app_file.write_text(render_app(template, version, edit_number))
    saved = time.perf_counter()
    try:
        arrived = await asyncio.wait_for(reply, EDIT_TIMEOUT)
    except TimeoutError:
        log(f"    {probe.name}: no reply from {version} within {EDIT_TIMEOUT:g} s")
        return None
    return arrived - saved


async def run_edits(
    apps: dict[str, tuple[Path, str, str]], edits: int, pause: float
) -> dict[str, tuple[list[float | None], ProbeClient]]:
    probes = {name: ProbeClient(name, url) for name, (_file, _template, url) in apps.items()}
    tasks = [asyncio.create_task(probe.run()) for probe in probes.values()]
    try:
        for probe in probes.values():
            await asyncio.wait_for(probe.connected.wait(), CONNECT_TIMEOUT)
        times: dict[str, list[float | None]] = {name: [] for name in apps}
        names = list(apps)
        for edit_number in range(1, edits + 1):
            order = names if edit_number % 2 else names[::-1]
            for name in order:
                app_file, template, _url = apps[name]
                probe = probes[name]
                await asyncio.wait_for(probe.connected.wait(), CONNECT_TIMEOUT)
                elapsed = await edit_and_wait(app_file, template, edit_number, probe)
                times[name].append(elapsed)
                outcome = f"{elapsed * 1000:.0f} ms" if elapsed is not None else "timed out"
                log(f"  edit {edit_number}/{edits}, {name}: {outcome}")
                await asyncio.sleep(pause)
        return {name: (times[name], probes[name]) for name in apps}
    finally:
        for probe in probes.values():
            probe.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def render_markdown(
    results: dict[str, tuple[list[float | None], ProbeClient]], command: str, info: dict[str, str], pause: float
) -> str:
    lines = [
        f"Machine: {describe_system(info)}.",
        "",
        f"Command: `{command}`",
        "",
        f"{len(next(iter(results.values()))[0])} edits per server, {pause:g} s apart; a probe every "
        f"{PROBE_INTERVAL * 1000:g} ms, so each time includes up to that much waiting for the next probe.",
        "",
        "| server | p50 ms | p95 ms | min ms | max ms | failed edits | connections dropped | close codes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, (times, probe) in results.items():
        measured = sorted(value * 1000 for value in times if value is not None)
        codes = ", ".join(f"{code}×{probe.close_codes.count(code)}" for code in sorted(set(probe.close_codes), key=str))
        lines.append(
            f"| {name} | {percentile(measured, 0.5):.0f} | {percentile(measured, 0.95):.0f} "
            f"| {min(measured, default=float('nan')):.0f} | {max(measured, default=float('nan')):.0f} "
            f"| {len(times) - len(measured)} | {probe.drops} | {codes or '-'} |"
        )

    ours, theirs = results[SANDBOX][0], results[UVICORN][0]
    ratios = [a / b for a, b in zip(ours, theirs) if a is not None and b is not None]
    drops = results[SANDBOX][1].drops
    lines += [
        "",
        f"ampt-sandbox's time divided by uvicorn's, per edit: {format_list(ratios, 2)}; "
        f"median {median(ratios):.2f}×. Goals: at most {RATIO_GOAL}× "
        f"({'met' if median(ratios) <= RATIO_GOAL else 'not met'}), and no dropped connection "
        f"({'met' if drops == 0 else 'not met'}: {drops} dropped).",
    ]
    return "\n".join(lines)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=20, help="edits per server (default: 20)")
    parser.add_argument(
        "--pause", type=float, default=0.7,
        help="seconds to wait after each edit's new version replied, before the next edit (default: 0.7)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    exit_on_sigterm()
    check_sandbox_importable()
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        sys.exit("uvicorn is not installed; run: .venv/bin/pip install -r benchmarks/requirements.txt")
    info = system_info()

    with contextlib.ExitStack() as stack:
        sandbox_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reload-bench-sandbox-")))
        uvicorn_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reload-bench-uvicorn-")))
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reload-bench-data-")))
        sandbox_template = (BENCH_DIR / "reload_apps" / "sandbox_app.py").read_text()
        uvicorn_template = (BENCH_DIR / "reload_apps" / "uvicorn_app.py").read_text()
        sandbox_app = sandbox_dir / "app.py"
        uvicorn_app = uvicorn_dir / "app.py"
        sandbox_app.write_text(sandbox_template)
        uvicorn_app.write_text(uvicorn_template)

        # Limits off: 500 probes per second are over the default sandbox rate limit.
        sandbox = ServerProcess(
            SANDBOX, sandbox_command(sandbox_app, data_dir, "--burst", "0", "--rate", "0", reload=True)
        )
        port = free_port()
        uvicorn = ServerProcess(
            UVICORN,
            [
                sys.executable, "-m", "uvicorn", "app:app",
                "--app-dir", str(uvicorn_dir),
                "--reload", "--reload-dir", str(uvicorn_dir),
                "--host", "127.0.0.1", "--port", str(port),
                "--lifespan", "off",
                "--log-level", "warning",
            ],
            cwd=uvicorn_dir,
            url=f"ws://127.0.0.1:{port}",
        )
        for server in (sandbox, uvicorn):
            stack.enter_context(server)
            log(f"Started {server.name} at {server.url}")
        assert sandbox.url is not None and uvicorn.url is not None
        apps = {
            SANDBOX: (sandbox_app, sandbox_template, sandbox.url),
            UVICORN: (uvicorn_app, uvicorn_template, uvicorn.url),
        }
        results = asyncio.run(run_edits(apps, args.edits, args.pause))

    command = " ".join([".venv/bin/python benchmarks/reload_bench.py", *sys.argv[1:]])
    print(render_markdown(results, command, info, args.pause))
    if args.json:
        records = {
            name: {
                "seconds": times,
                "drops": probe.drops,
                "close_codes": probe.close_codes,
                "failed_connects": probe.failed_connects,
            }
            for name, (times, probe) in results.items()
        }
        args.json.write_text(json.dumps({"system": info, "results": records}, indent=2) + "\n")


if __name__ == "__main__":
    run_main(main)
