"""Commands that inspect and drive a running ``dev``: status, connections, send, close, pause, resume.

Each one reads the state file in ``--data-dir`` to find the sandbox's
management API and its token, then makes one HTTP request to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from ..gateway.admin import AdminClient, AdminError, AdminUnavailable
from ..gateway.statefile import (
    SandboxState,
    StateFileError,
    describe_state,
    process_alive,
    read_state,
    remove_state,
)
from .main import DataDirOption, app, fail

logger = logging.getLogger("ampt_sandbox.cli")

T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
# Connection ids may begin with "-" (their alphabet is URL-safe base64), and
# so may a message such as -1; Click would otherwise parse both as options.
DASHED_ARGUMENTS = {"ignore_unknown_options": True}


class NotRunning(Exception):
    """No sandbox runs in the data directory; the message gives the reason."""

    def __init__(self, message: str, state: SandboxState | None = None, stale: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.state = state
        self.stale = stale


def locate(data_dir: Path) -> AdminClient:
    """Return a client for the sandbox that runs in ``data_dir``.

    Raises:
        NotRunning: there is no state file, it is invalid, or the process it
            names is gone (a stale file).
    """
    data_dir = data_dir.resolve()
    try:
        state = read_state(data_dir)
    except StateFileError as exc:
        raise NotRunning(f"no sandbox found in {data_dir}: {exc}") from None
    if state is None:
        raise NotRunning(
            f"no sandbox runs in {data_dir}: there is no state file; "
            f"start one with `ampt-sandbox dev APP.py --data-dir {data_dir}`"
        )
    if not process_alive(state.pid):
        raise NotRunning(
            f"no sandbox runs in {data_dir}: the state file is stale, left by process {state.pid}, "
            "which is no longer running; the next `ampt-sandbox dev` replaces it",
            state,
            stale=True,
        )
    try:
        return AdminClient(state)
    except ValueError as exc:
        raise NotRunning(f"the state file in {data_dir} is invalid: {exc}", state) from None


def call(data_dir: Path, action: Callable[[AdminClient], T]) -> T:
    """Run one management API call against the sandbox in ``data_dir``; exit 1 with one line on failure."""
    try:
        client = locate(data_dir)
    except NotRunning as exc:
        fail(exc.message)
    try:
        return action(client)
    except AdminUnavailable as exc:
        fail(f"the sandbox in {data_dir.resolve()} does not respond: {exc}")
    except AdminError as exc:
        if exc.kind == "InvalidConnectionError":
            fail(f"{exc.message}; `ampt-sandbox connections` lists the live connections")
        fail(f"the sandbox rejected the request (HTTP {exc.status}): {exc.message}")


def running_sandbox(data_dir: Path) -> SandboxState | None:
    """Return the state of a sandbox that runs and responds in ``data_dir``, or None.

    A state file whose process is gone, or whose address refuses connections
    (the process id was reused), is stale, so it is logged and removed.
    """
    try:
        state = read_state(data_dir)
    except StateFileError as exc:
        logger.warning("Replacing an invalid state file: %s", exc)
        return None
    if state is None:
        return None
    if process_alive(state.pid) and _answers(state):
        return state
    logger.warning(
        "Replacing a stale state file in %s: process %d, which wrote it, is no longer running", data_dir, state.pid
    )
    remove_state(data_dir, state.pid)
    return None


def _answers(state: SandboxState) -> bool:
    try:
        AdminClient(state, timeout=2.0).status()
    except AdminUnavailable as exc:
        # Only a refused connection proves that nothing listens there; a
        # timeout may be a sandbox whose event loop is busy.
        return not exc.refused
    except AdminError:
        return True
    except ValueError:
        return False
    return True


def reject_second_dev(data_dir: Path, state: SandboxState) -> NoReturn:
    fail(
        f"a sandbox already runs in {data_dir}: process {state.pid}, {state.url}; "
        "stop it first, or pass another --data-dir"
    )


@app.command()
def status(data_dir: DataDirOption = Path(".ampt"), as_json: JsonOption = False) -> None:
    """Show whether a sandbox runs in the data directory, and what it is doing.

    Exits with status 0 when one runs, 1 when none does.
    """
    try:
        client = locate(data_dir)
        body = client.status()
    except NotRunning as exc:
        _not_running(data_dir, exc, as_json)
    except AdminUnavailable as exc:
        error = NotRunning(f"the sandbox in {data_dir.resolve()} does not respond: {exc}", stale=exc.refused)
        _not_running(data_dir, error, as_json)
    except AdminError as exc:
        fail(f"the sandbox rejected the request (HTTP {exc.status}): {exc.message}")
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(format_status(body))


def _not_running(data_dir: Path, error: NotRunning, as_json: bool) -> NoReturn:
    if not as_json:
        fail(error.message)
    body: dict[str, Any] = {
        "running": False,
        "stale": error.stale,
        "data_dir": str(data_dir.resolve()),
        "message": error.message,
    }
    if error.state is not None:
        body["state_file"] = describe_state(error.state)
    typer.echo(json.dumps(body))
    raise typer.Exit(1)


def format_status(body: dict[str, Any]) -> str:
    """Return the text form of a ``status`` document."""
    limits = body["limits"]
    burst = "no burst limit" if limits["burst"] is None else f"burst {limits['burst']}"
    rate = "no rate limit" if limits["rate"] is None else f"rate {limits['rate']:g} messages/s"
    state = body["state"]
    if body.get("inactive_reason"):
        state += f" ({body['inactive_reason']})"

    rejected = body["connections_rejected"]
    by_status = ", ".join(f"{code}: {n}" for code, n in body["connections_rejected_by_status"].items() if n)
    if by_status:
        rejected_text = f"{rejected} rejected ({by_status})"
    else:
        rejected_text = f"{rejected} rejected"
    connections_text = f"{body['connections']} live, {body['connections_total']} in total, {rejected_text}"
    messages_text = (
        f"{body['messages_received']} received, {body['messages_sent']} sent, {body['messages_throttled']} throttled"
    )
    handlers_text = (
        f"{_plural(body['handler_errors'], 'error')}, {_plural(body['handler_timeouts'], 'timeout')}, "
        f"{body['invocations_in_flight']} in flight"
    )
    reloads_text = f"{body['reloads']}, {body['restarts']} runtime restarts; last load: {_format_load(body['last_load'])}"
    data_items = body.get("data_items")

    rows = [
        ("pid", str(body["pid"])),
        ("url", body["url"]),
        ("app", body["app"]),
        ("environment", f"{body['environment']}: {burst}, {rate}"),
        ("state", state),
        ("uptime", format_duration(body["uptime_seconds"])),
        ("connections", connections_text),
        ("messages", messages_text),
        ("handlers", handlers_text),
        ("reloads", reloads_text),
        ("data items", "unknown" if data_items is None else str(data_items)),
        ("management", body["admin_url"]),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"Sandbox running in {body['data_dir']}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def _format_load(load: dict[str, Any] | None) -> str:
    if load is None:
        return "none yet"
    outcome = "ok" if load["ok"] else f"failed: {load['error']}"
    return f"{outcome} ({load['reason']}, {load['at']})"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as ``45s``, ``3m 07s``, ``2h 03m 07s`` or ``4d 2h 03m``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@app.command()
def connections(data_dir: DataDirOption = Path(".ampt"), as_json: JsonOption = False) -> None:
    """List the live WebSocket connections of the running sandbox."""
    rows = call(data_dir, AdminClient.connections)
    if as_json:
        typer.echo(json.dumps({"connections": rows}, indent=2))
        return
    if not rows:
        typer.echo("No live connections.")
        return
    table = [("CONNECTION ID", "CONNECTED", "IDLE", "IN", "OUT", "QUERY")]
    for row in rows:
        query = row.get("query_string_parameters") or {}
        table.append((
            row["connection_id"],
            format_duration(row["connected_seconds"]),
            format_duration(row["idle_seconds"]),
            str(row["messages_received"]),
            str(row["messages_sent"]),
            "&".join(f"{name}={value}" for name, value in query.items()),
        ))
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths)]
        typer.echo("  ".join([*cells, line[-1]]).rstrip())


@app.command(context_settings=DASHED_ARGUMENTS)
def send(
    connection_id: Annotated[str, typer.Argument(help="The id of a live connection, as `connections` lists it.")],
    message: Annotated[str, typer.Argument(help="The text to send, as is: JSON or plain text.")],
    data_dir: DataDirOption = Path(".ampt"),
) -> None:
    """Send MESSAGE to one connection as a text frame, as ws.send does with a str."""
    _check_connection_id(connection_id)
    result = call(data_dir, lambda client: client.send(connection_id, message))
    typer.echo(f"Sent {result['bytes']} bytes to {connection_id}.")


@app.command(context_settings=DASHED_ARGUMENTS)
def close(
    connection_id: Annotated[str, typer.Argument(help="The id of a live connection, as `connections` lists it.")],
    data_dir: DataDirOption = Path(".ampt"),
) -> None:
    """Close one connection with code 1000; its disconnected handler runs."""
    _check_connection_id(connection_id)
    call(data_dir, lambda client: client.close(connection_id))
    typer.echo(f"Closing {connection_id} with code 1000.")


def _check_connection_id(connection_id: str) -> None:
    # An empty id would make the request's path /connections/, another route.
    if not connection_id.strip():
        fail("the connection id is empty; `ampt-sandbox connections` lists the live connections")


@app.command()
def pause(data_dir: DataDirOption = Path(".ampt")) -> None:
    """Reject new connections with HTTP 403 until `resume`; open connections stay open."""
    call(data_dir, lambda client: client.set_paused(True))
    typer.echo("Paused: new connections get HTTP 403 until `ampt-sandbox resume`.")


@app.command()
def resume(data_dir: DataDirOption = Path(".ampt")) -> None:
    """Accept new connections again after `pause`."""
    result = call(data_dir, lambda client: client.set_paused(False))
    if result["state"] == "active":
        typer.echo("Resumed: new connections are accepted.")
    else:
        typer.echo(f"Resumed, but the sandbox is {result['state']}: connections get HTTP 403 until the app loads.")
