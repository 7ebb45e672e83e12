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
        await _serve(config, gateway, admin, on_url, on_gateway)
    finally:
        await admin.close()
        remove_state(config.data_dir, admin.pid)


async def _serve(
    config: GatewayConfig,
    gateway: Gateway,
    admin: AdminServer,
    on_url: Callable[[Gateway], None],
    on_gateway: Callable[[Gateway], None] | None,
) -> None:
    if on_gateway is not None:
        on_gateway(gateway)

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

    url_shown = False

    async def load(reason: str) -> None:
        nonlocal url_shown
        result = await gateway.supervisor.load(reason)
        admin.record_load(reason, result)
        if result.ok and not url_shown:
            url_shown = True
            on_url(gateway)

    result = await gateway.supervisor.load("start")
    admin.record_load("start", result)
    if not result.ok and not config.reload:
        await gateway.shutdown()
        raise StartError(f"{config.app} failed to import: {result.error}")
    if result.ok:
        url_shown = True
        on_url(gateway)
    else:
        logger.error(
            "The sandbox is inactive (connections get HTTP 403) until %s imports; save a fix to reload",
            config.app.name,
        )

    watcher = None
    if config.reload:
        watcher = asyncio.create_task(watch_and_reload(config.app, config.watch, load))

    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    await gateway.shutdown()
