"""The live terminal view of ``dev``, drawn with Rich.

The view fills the terminal: a header with the URL, the environment, its
limits and the message rate, a table of the live connections, the latest
handler error with its traceback, and the tail of the log. A task on the
gateway's event loop redraws it at most ``max_redraws_per_second`` times a
second, and only when something changed or a second has passed (the uptime).
So the cost of drawing does not grow with the message rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .logs import LogBuffer, plain_handler

if TYPE_CHECKING:
    from ..gateway.server import Gateway

LEVEL_STYLES = {
    logging.DEBUG: "dim",
    logging.INFO: "",
    logging.WARNING: "yellow",
    logging.ERROR: "bold red",
    logging.CRITICAL: "bold red",
}
STATE_STYLES = {"active": "bold green", "paused": "bold yellow", "inactive": "bold red", "stopping": "yellow"}
MAX_CONNECTION_ROWS = 8
MAX_ERROR_LINES = 12
LOGGER_PREFIX = "ampt_sandbox."
# Log records printed to the terminal after the view closes, so that the end
# of the run (the shutdown, a last error) stays visible.
TAIL_AFTER_EXIT = 15


class RateMeter:
    """Messages per second over the last second, from samples of a running count."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, count: int) -> float:
        """Record ``count`` at time ``now`` (seconds) and return the rate over the window."""
        samples = self.samples
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        first_time, first_count = samples[0]
        elapsed = now - first_time
        return (count - first_count) / elapsed if elapsed > 0 else 0.0


class LogTail:
    """The newest log records that fit in the height Rich gives, one line each plus traceback lines."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        self.records = records

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = options.height or options.size.height
        lines: list[Text] = []
        for record in reversed(self.records):
            lines[:0] = record_lines(record)
            if len(lines) >= height:
                break
        for line in lines[-height:]:
            line.no_wrap = True
            line.overflow = "ellipsis"
            yield line


def record_lines(record: logging.LogRecord) -> list[Text]:
    """Format one record as lines of Text: time, level, source, message, then any traceback."""
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    first, *rest = message.splitlines() or [""]
    source = record.name.removeprefix(LOGGER_PREFIX)
    stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
    style = LEVEL_STYLES.get(record.levelno, "")
    line = Text.assemble(
        (stamp, "dim"), " ", (f"{record.levelname:<7}", style or "cyan"), " ", (f"{source}: ", "dim"), (first, style)
    )
    return [line, *(Text("         " + text, style=style or "dim") for text in rest)]


class LiveView:
    """The full-screen view of one ``dev`` run.

    Call ``start`` before the event loop runs, ``attach`` from the loop once
    the gateway listens, and ``stop`` after the loop has finished. ``handler``
    is the logging handler whose records the view shows.
    """

    def __init__(
        self, console: Console | None = None, max_redraws_per_second: float = 10.0, screen: bool = True
    ) -> None:
        self.console = console or Console()
        self.buffer = LogBuffer()
        self.handler: logging.Handler = self.buffer
        self.gateway: Gateway | None = None
        self.interval = 1.0 / max_redraws_per_second
        self.redraws = 0
        self.rate_in = 0.0
        self.rate_out = 0.0
        self._meter_in = RateMeter()
        self._meter_out = RateMeter()
        # The redirects stay off: in the alternate screen, text printed
        # around the view would be drawn over at the next redraw anyway.
        self._live = Live(
            console=self.console, screen=screen, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._live.start()
        self.redraw()

    def attach(self, gateway: Gateway) -> None:
        """Show ``gateway`` and start redrawing; must run on the gateway's event loop."""
        self.gateway = gateway
        self._task = asyncio.get_running_loop().create_task(self._redraw_forever(), name="live view")

    def stop(self) -> None:
        """Close the view and print the last log lines to the normal screen."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if not self._live.is_started:
            return
        self.redraw()
        self._live.stop()
        tail = list(self.buffer.records)[-TAIL_AFTER_EXIT:]
        for record in tail:
            for line in record_lines(record):
                self.console.print(line)

    def redraw(self) -> None:
        self._live.update(self.render(), refresh=True)
        self.redraws += 1

    async def _redraw_forever(self) -> None:
        loop = asyncio.get_running_loop()
        drawn_at = 0.0
        drawn: tuple[object, ...] = ()
        while True:
            await asyncio.sleep(self.interval)
            gateway = self.gateway
            assert gateway is not None
            now = loop.time()
            counters = gateway.counters
            self.rate_in = self._meter_in.sample(now, counters["messages_in"])
            self.rate_out = self._meter_out.sample(now, counters["messages_out"])
            # Counters that change without a log line (when the log level
            # hides messages) still trigger a redraw.
            snapshot = (
                self.buffer.version, counters["messages_in"], counters["messages_out"], len(gateway.clients),
                gateway.state, gateway.stopping,
            )
            if snapshot != drawn or now - drawn_at >= 1.0 or self.rate_in or self.rate_out:
                try:
                    self.redraw()
                except Exception:  # noqa: BLE001 - a drawing bug must not stop the sandbox
                    self._fall_back_to_plain_lines()
                    return
                drawn, drawn_at = snapshot, now

    def _fall_back_to_plain_lines(self) -> None:
        with contextlib.suppress(Exception):
            self._live.stop()
        handler = plain_handler()
        for logger in (logging.getLogger("ampt_sandbox"), logging.getLogger()):
            logger.handlers[:] = [handler]
        logging.getLogger("ampt_sandbox.liveview").exception(
            "Redrawing the live view failed; log lines are printed to stderr from now on"
        )

    # Rendering.

    def render(self) -> RenderableType:
        layout = Layout()
        header = Layout(self._render_header(), name="header", size=5)
        parts = [header]
        gateway = self.gateway
        if gateway is not None:
            open_clients = sum(1 for client in gateway.clients.values() if client.open)
            rows = min(open_clients, MAX_CONNECTION_ROWS) + (open_clients > MAX_CONNECTION_ROWS)
            parts.append(Layout(self._render_connections(), name="connections", size=max(rows, 1) + 3))
        error = self.buffer.last_error
        if error is not None:
            lines = record_lines(error)[-MAX_ERROR_LINES:]
            parts.append(Layout(self._render_error(lines), name="error", size=len(lines) + 2))
        parts.append(Layout(Panel(LogTail(list(self.buffer.records)), title="Log", title_align="left"), name="log"))
        parts.append(Layout(self._render_footer(), name="footer", size=1))
        layout.split_column(*parts)
        return layout

    def _render_header(self) -> RenderableType:
        gateway = self.gateway
        if gateway is None:
            return Panel(Text("Starting..."), title="ampt-sandbox dev", title_align="left")
        config = gateway.config
        limits = config.limits
        state = "stopping" if gateway.stopping else gateway.state
        uptime = _format_uptime(time.time() - gateway.started_at)

        burst = "no burst limit" if limits.burst is None else f"burst {limits.burst}"
        rate = "no rate limit" if limits.rate is None else f"rate {limits.rate:g} messages/s"
        first = Text.assemble(
            (gateway.url, "bold"), "  ", (state, STATE_STYLES.get(state, "")), f"  up {uptime}  ", (str(config.app), "dim")
        )
        in_flight = f"in flight {len(gateway.invocations)}" + ("" if limits.burst is None else f" of {limits.burst}")
        second = Text(f"{config.env}: {burst}, {rate}  {in_flight}")

        counters = gateway.counters
        over_limit = bool(limits.rate) and self.rate_in >= limits.rate
        rate_text = Text.assemble(
            (f"{self.rate_in:.1f}", "bold red" if over_limit else "bold"),
            " messages/s in" + ("" if limits.rate is None else f" of {limits.rate:g}"),
        )
        rejected = counters["rejected_403"] + counters["rejected_429"] + counters["rejected_500"]
        totals = Text.assemble(
            f"{self.rate_out:.1f} out  throttled {counters['throttled']}  rejected {rejected}  ",
            (f"errors {counters['handler_errors']}", "red" if counters["handler_errors"] else ""),
            "  ",
            (f"timeouts {counters['handler_timeouts']}", "yellow" if counters["handler_timeouts"] else ""),
            f"  reloads {gateway.supervisor.reloads}",
        )
        cells: list[RenderableType] = [rate_text]
        if limits.rate:
            cells.append(ProgressBar(total=float(limits.rate), completed=min(self.rate_in, float(limits.rate)), width=20))
        cells.append(totals)
        third = Table.grid(padding=(0, 1))
        for _ in cells:
            third.add_column(no_wrap=True, overflow="ellipsis")
        third.add_row(*cells)

        for line in (first, second):
            line.no_wrap = True
            line.overflow = "ellipsis"
        grid = Group(first, second, third)
        return Panel(grid, title="ampt-sandbox dev", title_align="left")

    def _render_connections(self) -> RenderableType:
        gateway = self.gateway
        assert gateway is not None
        now = gateway.loop.time()
        clients = [client for client in gateway.clients.values() if client.open]
        table = Table(expand=True, box=None, padding=(0, 1), show_edge=False)
        table.add_column("connection id", no_wrap=True)
        table.add_column("open", justify="right", no_wrap=True)
        table.add_column("idle", justify="right", no_wrap=True)
        table.add_column("in", justify="right", no_wrap=True)
        table.add_column("out", justify="right", no_wrap=True)
        table.add_column("query", no_wrap=True, overflow="ellipsis", ratio=1)
        for client in clients[:MAX_CONNECTION_ROWS]:
            query = client.meta.get("query_string_parameters") or {}
            table.add_row(
                client.id,
                _format_uptime(now - client.opened_at),
                _format_uptime(now - client.last_activity),
                str(client.messages_in),
                str(client.messages_out),
                "&".join(f"{name}={value}" for name, value in query.items()),
            )
        if len(clients) > MAX_CONNECTION_ROWS:
            table.add_row(Text(f"... and {len(clients) - MAX_CONNECTION_ROWS} more", style="dim"))
        title = f"Connections ({len(clients)})"
        body: RenderableType = table if clients else Text("No connections yet.", style="dim")
        return Panel(body, title=title, title_align="left")

    def _render_error(self, lines: list[Text]) -> RenderableType:
        for line in lines:
            line.no_wrap = True
            line.overflow = "ellipsis"
        return Panel(Group(*lines), title="Last error", title_align="left", border_style="red")

    def _render_footer(self) -> RenderableType:
        return Text(
            " Ctrl-C stops the sandbox. In another terminal: ampt-sandbox status, connections, send, close, pause",
            style="dim", no_wrap=True, overflow="ellipsis",
        )


def _format_uptime(seconds: float) -> str:
    total = int(max(seconds, 0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
