"""Runtime supervision: which runtime serves, loading and replacing it, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import TYPE_CHECKING

from ..channel.frames import Status
from .runtime_process import LoadResult, RuntimeExited, RuntimeProcess

if TYPE_CHECKING:
    from .server import Gateway, Invocation

logger = logging.getLogger("ampt_sandbox.gateway.supervisor")

MAX_RESTART_DELAY = 5.0
# A runtime gets this long past a handler's own timeout before the gateway
# decides its event loop is blocked and replaces it.
HUNG_GRACE = 1.0
# An app import that takes longer than this is treated as failed, so that
# code blocking at import time (a sleep, a network call) cannot hang a load.
LOAD_TIMEOUT = 10.0
# A runtime that served this long resets the restart back-off.
STABLE_SECONDS = 10.0


class Supervisor:
    """Keeps one active runtime loaded with the app, plus a warm spare.

    Invocations go to the active runtime. While there is none (a restart
    after a crash, or before the first load) they wait in a backlog and are
    sent once a runtime has loaded the app.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.active: RuntimeProcess | None = None
        self.spare: RuntimeProcess | None = None
        self.retiring: set[RuntimeProcess] = set()
        self.starting: set[RuntimeProcess] = set()
        self.handlers: dict[str, float] = {}
        self.data_events = False
        self.loaded = False
        self.inactive_reason = "no app module has loaded yet"
        self.last_error: LoadResult | None = None
        self.backlog: list[Invocation] = []
        self.reloads = 0
        self.restarts = 0
        self._numbers = itertools.count(1)
        self._lock = asyncio.Lock()
        self._restart_delay = 0.1
        self._active_since = 0.0
        self._stopping = False
        self._spare_task: asyncio.Task[None] | None = None
        self._loading: RuntimeProcess | None = None

    async def _spawn(self) -> RuntimeProcess:
        runtime = RuntimeProcess(next(self._numbers), self.gateway.on_frames, self._on_exit)
        self.starting.add(runtime)
        try:
            await runtime.start()
        finally:
            self.starting.discard(runtime)
        return runtime

    async def _take_runtime(self) -> RuntimeProcess:
        if self._spare_task is not None:
            with contextlib.suppress(Exception):
                await self._spare_task
        runtime, self.spare = self.spare, None
        if runtime is not None and runtime.alive:
            return runtime
        return await self._spawn()

    async def _prepare_spare(self) -> None:
        if self._stopping or (self.spare is not None and self.spare.alive):
            return
        try:
            self.spare = await self._spawn()
        except (RuntimeExited, OSError) as exc:
            logger.warning("Could not start a spare runtime: %s", exc)

    async def load(self, reason: str = "start") -> LoadResult:
        """Import the app in a fresh runtime and switch to it if the import succeeds."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            started = loop.time()
            runtime = None
            try:
                runtime = await self._take_runtime()
                self._loading = runtime
                result = await asyncio.wait_for(
                    runtime.load(self.gateway.config.app, self.gateway.live_connection_ids()), LOAD_TIMEOUT
                )
            except TimeoutError:
                runtime.kill()
                result = LoadResult(
                    ok=False,
                    error=f"the import did not finish within {LOAD_TIMEOUT:g} s; "
                    "look for code that blocks at module level (sleep, network, input)",
                )
            except (RuntimeExited, OSError) as exc:
                if runtime is not None and runtime.aborted:
                    result = LoadResult(ok=False, error="stopped: a newer change or a shutdown replaced this load")
                else:
                    result = LoadResult(ok=False, error=f"the runtime failed to start: {exc}")
                    runtime = None
            finally:
                self._loading = None
            elapsed_ms = (loop.time() - started) * 1000

            if result.ok and runtime is not None:
                self._switch_to(runtime, result)
                self.last_error = None
                self.reloads += reason != "start"
                logger.info("Loaded %s in %.0f ms (%s)", self.gateway.config.app.name, elapsed_ms, reason)
                if not result.handlers and not result.data_events:
                    logger.warning(
                        "%s registers no handler: use ws.on('connected'|'message'|'disconnected', handler)",
                        self.gateway.config.app.name,
                    )
            else:
                self.last_error = result
                if runtime is not None:
                    asyncio.create_task(runtime.stop(0.5))
                if self.active is None:
                    self.loaded = False
                    self.inactive_reason = f"the app failed to import: {result.error}"
                    self._fail_backlog(f"the app failed to import: {result.error}")
                details = f"\n{result.traceback.rstrip()}" if result.traceback.strip() else ""
                logger.error("Failed to load %s (%s): %s%s", self.gateway.config.app.name, reason, result.error, details)
            self._spare_task = asyncio.create_task(self._prepare_spare())
            return result

    def abort_load(self) -> None:
        """End the load in progress, if any, by killing the runtime that imports the app."""
        runtime = self._loading
        if runtime is not None:
            runtime.aborted = True
            runtime.kill()

    def _switch_to(self, runtime: RuntimeProcess, result: LoadResult) -> None:
        old = self.active
        self.active = runtime
        self.handlers = dict(result.handlers)
        if result.data_events:
            self.handlers["data"] = result.data_events
        self.data_events = bool(result.data_events)
        self.loaded = True
        self._active_since = asyncio.get_running_loop().time()
        backlog, self.backlog = self.backlog, []
        for invocation in backlog:
            self.submit(invocation)
        if old is not None:
            # The old runtime finishes the invocations it has, bounded by
            # their timeouts, then exits; a stuck one is killed.
            self.retiring.add(old)
            grace = 6.0
            if old.load_result is not None:
                timeouts = [*old.load_result.handlers.values(), old.load_result.data_events]
                grace = max(timeouts, default=5.0) + 1.0
            asyncio.create_task(old.stop(grace))

    def submit(self, invocation: Invocation) -> None:
        runtime = self.active
        loop = asyncio.get_running_loop()
        if runtime is None or not runtime.alive:
            self.backlog.append(invocation)
            return
        invocation.runtime = runtime
        timeout = self.handlers.get(invocation.event, 5.0)
        invocation.started = loop.time()
        invocation.deadline = invocation.started + timeout + HUNG_GRACE
        runtime.write(invocation.frame)

    def broadcast(self, frame: bytes) -> None:
        """Write a notification to every runtime that can still send."""
        for runtime in (self.active, *self.retiring):
            if runtime is not None and runtime.alive:
                runtime.write(frame)

    def _fail_backlog(self, why: str) -> None:
        backlog, self.backlog = self.backlog, []
        for invocation in backlog:
            self.gateway.finish_invocation(invocation, Status.ERROR, {"error": why})

    def _on_exit(self, runtime: RuntimeProcess) -> None:
        if runtime is self.spare:
            self.spare = None
            return
        self.retiring.discard(runtime)
        lost = [inv for inv in self.gateway.invocations.values() if inv.runtime is runtime]
        code = runtime.process.returncode if runtime.process else None
        for invocation in lost:
            if invocation.timed_out:
                # The watchdog killed the runtime for this one: a timeout.
                self.gateway.finish_invocation(
                    invocation, Status.TIMEOUT, {"error": "its event loop was blocked past the timeout"}
                )
                continue
            logger.error(
                "The %s invocation for %s failed: runtime %d exited (status %s)",
                invocation.event, invocation.connection_id or "-", runtime.number, code,
            )
            # Logged just above, so finish_invocation does not log it again.
            self.gateway.finish_invocation(
                invocation,
                Status.ERROR,
                {"error": f"the runtime exited with status {code} during the handler", "logged": True},
            )
        if runtime is not self.active or self._stopping or self.gateway.stopping:
            return

        self.active = None
        self.restarts += 1
        loop = asyncio.get_running_loop()
        if loop.time() - self._active_since > STABLE_SECONDS:
            self._restart_delay = 0.1
        delay = self._restart_delay
        self._restart_delay = min(MAX_RESTART_DELAY, self._restart_delay * 2)
        logger.error(
            "Runtime %d exited with status %s; invocations lost: %d; restarting in %.1f s",
            runtime.number, code, len(lost), delay,
        )
        loop.call_later(delay, lambda: asyncio.ensure_future(self.load("restart after a runtime exit")))

    async def stop(self) -> None:
        self._stopping = True
        if self._spare_task is not None:
            self._spare_task.cancel()
        runtimes = [r for r in (self.active, self.spare, *self.retiring, *self.starting) if r is not None]
        await asyncio.gather(*(runtime.stop(2.0) for runtime in runtimes), return_exceptions=True)
