"""One ``ampt-sandbox dev`` run: start the gateway, load the app, serve until a signal."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from .admin import AdminServer
from .config import GatewayConfig
from .reloader import watch_and_reload
from .seed import watch_seed
from .server import Gateway
from .statefile import remove_state, write_state

logger = logging.getLogger("ampt_sandbox.gateway")


class StartError(Exception):
    """The sandbox could not start; the message is the one line to show."""


async def run_dev(
    config: GatewayConfig,
    store: Any,
    on_url: Callable[[Gateway], None],
    on_gateway: Callable[[Gateway], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly.

    Raises:
        StartError: the port is taken, or the app failed to import with
            reload off.
    """
    # Signals are handled from the start, so that a SIGTERM during start-up
    # still ends in a clean shutdown.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            stop.set()
        elif sig == signal.SIGINT:
            # A second Ctrl-C: the user does not want to wait.
            logger.warning("Second interrupt: exiting without waiting for handlers")
            os._exit(1)
        else:
            logger.info("Already shutting down")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    gateway = Gateway(config, store)
    try:
        await gateway.start()
    except OSError as exc:
        if store is not None:
            store.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartError(
                f"port {config.port} on {config.host} is already in use; stop the program "
                "that uses it, or pass --port 0 to pick a free port"
            ) from None
        raise StartError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None

    # The management API and the state file let the other commands find and
    # drive this run. A clean exit removes the state file.
    admin = AdminServer(gateway)
    try:
        await admin.start()
        write_state(config.data_dir, admin.state())
    except OSError as exc:
        await admin.close()
        await gateway.shutdown()
        raise StartError(
            f"cannot start the management API or write the state file in {config.data_dir}: {exc.strerror or exc}"
        ) from None
    try:
        await _serve(config, gateway, admin, stop, on_url, on_gateway)
    finally:
        await admin.close()
        remove_state(config.data_dir, admin.pid)


async def _serve(
    config: GatewayConfig,
    gateway: Gateway,
    admin: AdminServer,
    stop: asyncio.Event,
    on_url: Callable[[Gateway], None],
    on_gateway: Callable[[Gateway], None] | None,
) -> None:
    if on_gateway is not None:
        on_gateway(gateway)

    url_shown = False

    async def load(reason: str) -> bool:
        nonlocal url_shown
        result = await gateway.supervisor.load(reason)
        admin.record_load(reason, result)
        if result.ok and not url_shown:
            url_shown = True
            on_url(gateway)
        return result.ok

    # The watcher starts before the first load, so that a fix saved while
    # that load fails or hangs is picked up.
    watcher = None
    if config.reload:
        watcher = asyncio.create_task(
            watch_and_reload(config.app, config.watch, load, gateway.supervisor.abort_load)
        )
        watcher.add_done_callback(_report_watcher_end)

    reseeder = None
    if config.seed is not None and gateway.store is not None:
        reseeder = asyncio.create_task(watch_seed(gateway.store, config.seed))
        reseeder.add_done_callback(_report_watcher_end)

    first_load = asyncio.create_task(load("start"))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({first_load, stopped}, return_when=asyncio.FIRST_COMPLETED)

    if first_load.done():
        if not first_load.result():
            if not config.reload:
                stopped.cancel()
                await gateway.shutdown()
                error = gateway.supervisor.last_error.error if gateway.supervisor.last_error else "unknown error"
                raise StartError(f"{config.app} failed to import: {error}")
            logger.error(
                "The sandbox is inactive (connections get HTTP 403) until %s imports; save a fix to reload",
                config.app.name,
            )
        await stopped
    else:
        # Stopped while the first import still runs: end it.
        gateway.supervisor.abort_load()
        first_load.cancel()

    for task in (watcher, reseeder):
        if task is not None:
            task.cancel()
    await gateway.shutdown()


def _report_watcher_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error("A file watcher failed, so changes are no longer picked up: %s", error)
