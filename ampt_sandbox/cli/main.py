"""The ``ampt-sandbox`` command line."""

from __future__ import annotations

import logging
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="ampt-sandbox",
    help="Run a WebSocket app written for the ampt ws and data SDK on this machine.",
    no_args_is_help=True,
    # Local variables may hold the admin token: never print them.
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """Run a WebSocket app written for the ampt ws and data SDK on this machine."""


class Environment(str, Enum):
    sandbox = "sandbox"
    preview = "preview"
    stage = "stage"


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def fail(message: str) -> None:
    """Print one error line to stderr and exit with status 1."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def setup_plain_logging(level: str) -> None:
    from ..liveview.logs import install_handler, plain_handler

    install_handler(plain_handler(), level)


def check_numbers(**options: tuple[float | None, float, float | None]) -> None:
    """Exit with one line when an option is NaN, infinite or out of its range."""
    for name, (value, low, high) in options.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if not math.isfinite(value):
            fail(f"{flag} must be a finite number, got {value}")
        if value < low or (high is not None and value > high):
            bounds = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            fail(f"{flag} must be {bounds}, got {value:g}")


DataDirOption = Annotated[
    Path, typer.Option("--data-dir", help="Folder of the data store and the state file.")
]


@app.command()
def dev(
    app_file: Annotated[Path, typer.Argument(metavar="APP.py", help="The handler module to serve.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free port.")] = 8765,
    data_dir: DataDirOption = Path(".ampt"),
    env: Annotated[Environment, typer.Option(help="Environment type whose limits apply.")] = Environment.sandbox,
    burst: Annotated[Optional[int], typer.Option(help="Requests in flight at once; overrides --env, 0 is no limit.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Messages per second; overrides --env, 0 is no limit.")] = None,
    reload: Annotated[bool, typer.Option("--reload/--no-reload", help="Reload the app when a Python file changes.")] = True,
    watch: Annotated[Optional[list[Path]], typer.Option(help="Another folder to watch for changes; repeatable.")] = None,
    max_message_size: Annotated[int, typer.Option(help="Largest incoming message in bytes; larger ones close with 1009.")] = 128 * 1024,
    idle_timeout: Annotated[float, typer.Option(help="Seconds without a message before a connection closes with 1001; 0 is never.")] = 600.0,
    max_connection_age: Annotated[float, typer.Option(help="Seconds before any connection closes with 1001; 0 is never.")] = 7200.0,
    ping_interval: Annotated[float, typer.Option(help="Seconds between keepalive pings that find vanished clients; 0 is off.")] = 20.0,
    ping_timeout: Annotated[float, typer.Option(help="Seconds to wait for a keepalive pong.")] = 20.0,
    max_send_queue: Annotated[int, typer.Option(help="Bytes queued for one client before it is closed with 1008.")] = 4 * 1024 * 1024,
    handshake_timeout: Annotated[float, typer.Option(help="Seconds a client has to send its handshake request before it is dropped.")] = 10.0,
    log_level: Annotated[LogLevel, typer.Option(help="Minimum level of the log lines shown.")] = LogLevel.info,
    seed: Annotated[Optional[Path], typer.Option("--seed", "-s", help="JSON data file to import at start; other keys are kept.")] = None,
    reseed: Annotated[bool, typer.Option("--reseed", "--rs", help="Import the --seed file (default data.json) again whenever it changes.")] = False,
    no_tui: Annotated[
        bool, typer.Option("--no-tui", help="Print log lines instead of the live view; the default when output is not a terminal.")
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option(help="Log lines on stderr as text, or as one JSON object a line for tools (no live view).")
    ] = LogFormat.text,
) -> None:
    """Serve APP.py on a local WebSocket URL until Ctrl-C."""
    import asyncio

    from ..eventloop import install_event_loop_policy
    from ..gateway.config import GatewayConfig
    from ..gateway.dev import StartError, run_dev
    from ..gateway.server import Gateway
    from ..limits import resolve_limits
    from ..store import DataStore, StoreLockedError, StoreOpenError

    from .manage import reject_second_dev, running_sandbox

    view = None
    if log_format is LogFormat.json:
        from ..liveview.logs import install_handler, json_handler

        install_handler(json_handler(), log_level.value)
    elif not no_tui and sys.stdout.isatty():
        from ..liveview.logs import install_handler
        from ..liveview.view import LiveView

        view = LiveView()
        install_handler(view.handler, log_level.value)
    else:
        setup_plain_logging(log_level.value)
    app_path = app_file.resolve()
    if app_path.is_dir():
        fail(f"{app_file} is a folder; pass the path of your handler module, e.g. {app_file / 'app.py'}")
    if not app_path.is_file():
        fail(f"app file not found: {app_file}; pass the path of your handler module, e.g. app.py")
    check_numbers(
        port=(port, 0, 65535),
        rate=(rate, 0, None),
        max_message_size=(max_message_size, 1, None),
        idle_timeout=(idle_timeout, 0, None),
        max_connection_age=(max_connection_age, 0, None),
        ping_interval=(ping_interval, 0, None),
        ping_timeout=(ping_timeout, 0, None),
        max_send_queue=(max_send_queue, 1, None),
        handshake_timeout=(handshake_timeout, 0.001, None),
    )
    for folder in watch or []:
        if not folder.exists():
            fail(f"--watch path not found: {folder}; pass an existing file or folder")
    try:
        limits = resolve_limits(env.value, burst, rate)
    except ValueError as exc:
        fail(str(exc))

    config = GatewayConfig(
        app=app_path,
        data_dir=data_dir.resolve(),
        host=host,
        port=port,
        env=env.value,
        limits=limits,
        reload=reload,
        watch=[path.resolve() for path in watch or []],
        max_message_size=max_message_size,
        idle_timeout=idle_timeout or None,
        max_connection_age=max_connection_age or None,
        ping_interval=ping_interval or None,
        ping_timeout=ping_timeout or None,
        max_send_queue=max_send_queue,
        handshake_timeout=handshake_timeout,
    )
    # One dev per data directory; a state file left by a dead process is replaced.
    running = running_sandbox(config.data_dir)
    if running is not None:
        reject_second_dev(config.data_dir, running)
    try:
        # The store may hold private data: a new data directory is the user's alone.
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = DataStore.open(config.data_dir)
    except StoreLockedError as exc:
        running = running_sandbox(config.data_dir)
        if running is not None:
            reject_second_dev(config.data_dir, running)
        fail(str(exc))
    except StoreOpenError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot use data directory {config.data_dir}: {exc.strerror or exc}")

    if reseed and seed is None:
        seed = Path("data.json")
    if seed is not None:
        from ..gateway.seed import seed_store

        if not seed.is_file():
            store.close()
            fail(f'File "{seed}" not found.' if not seed.exists() else f"--seed {seed} is not a file")
        if not seed_store(store, seed):
            store.close()
            fail(f"cannot seed the store from {seed}; fix the file (the error is logged above) and start again")
    config.seed = seed.resolve() if reseed and seed is not None else None

    def show_url(gateway: Gateway) -> None:
        # The live view shows the URL in its header instead.
        if view is None:
            typer.echo(gateway.url)
            sys.stdout.flush()

    error = None
    if view is not None:
        view.start()
    try:
        install_event_loop_policy()
        asyncio.run(run_dev(config, store, show_url, view.attach if view is not None else None))
    except StartError as exc:
        error = str(exc)
    finally:
        if view is not None:
            view.stop()
    if error is not None:
        fail(error)


def main() -> None:
    app()


# Commands defined in their own modules register themselves on ``app``.
from . import connect_cmd, init_cmd  # noqa: E402, F401


# The management commands register themselves on ``app``.
from . import manage  # noqa: E402,F401
from .data_commands import data_app  # noqa: E402

app.add_typer(data_app, name="data")
