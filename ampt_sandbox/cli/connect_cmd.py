"""``ampt-sandbox connect``: a terminal WebSocket client for poking at an app.

Each line read from standard input is sent as a text message. Messages that
arrive are printed to standard output, one per line, or as pretty-printed
JSON with ``--json``. Status lines (connected, closed, errors) go to
standard error, so standard output contains only the messages.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
from typing import Annotated, TextIO
from urllib.parse import urlsplit

import typer

from .main import app, fail

# Exit statuses besides 0. A close with 1000 or 1001, or one that this
# client started, exits with 0.
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
NORMAL_CLOSE_CODES = (1000, 1001)
DEFAULT_WAIT = 1.0
BINARY_PREVIEW_BYTES = 32


def parse_header(text: str) -> tuple[str, str]:
    """Split a ``Name: value`` header option; raises ValueError when it has no colon or name."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise ValueError(f"invalid header {text!r}: write it as 'Name: value'")
    return name.strip(), value.strip()


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is a ws:// or wss:// URL with a host."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        suggestion = ("ws" if parts.scheme == "http" else "wss") + url[len(parts.scheme):]
        raise ValueError(f"invalid URL {url!r}: it must start with ws:// or wss://; try {suggestion}")
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"invalid URL {url!r}: it must start with ws:// or wss://")
    if not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: it has no host")
    port_error = f"invalid URL {url!r}: the port must be a number from 1 to 65535"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(port_error) from None
    if port == 0:
        raise ValueError(port_error)


def check_wait(wait: float) -> None:
    """Raise ValueError unless ``wait`` is a number of seconds >= 0, infinity, or -1."""
    if math.isnan(wait) or (wait < 0 and wait != -1):
        raise ValueError(
            f"invalid --wait {wait}: give a number of seconds >= 0, or -1 to wait until the server closes"
        )


def valid_text(line: str) -> str:
    """Return ``line`` with every byte that was not valid UTF-8 replaced by U+FFFD.

    Python decodes undecodable input bytes to lone surrogates (U+DC80 to
    U+DCFF) under the C locale, and a WebSocket text message cannot carry a
    surrogate, so sending such a line would fail.
    """
    try:
        raw = line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Surrogates outside that range did not come from input bytes.
        raw = line.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def format_message(message: str | bytes, pretty_json: bool) -> str:
    """Return the text to print for an incoming message."""
    if isinstance(message, bytes):
        preview = message[:BINARY_PREVIEW_BYTES].hex(" ")
        more = " ..." if len(message) > BINARY_PREVIEW_BYTES else ""
        return f"<binary message, {len(message)} bytes: {preview}{more}>"
    if pretty_json:
        try:
            value = json.loads(message)
        except ValueError:
            return message
        return json.dumps(value, indent=2, ensure_ascii=False)
    return message


def describe_close(code: int | None, reason: str) -> str:
    """Return a line that names the close code, its meaning, and the reason."""
    if code is None or code == 1006:
        return "Connection lost without a close frame (1006)"
    from websockets.frames import CloseCode

    try:
        meaning = CloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        meaning = "application-defined" if code >= 3000 else "unknown code"
    text = f"Closed with code {code} ({meaning})"
    if reason:
        text += f": {reason}"
    return text


def _start_stdin_reader(
    stdin: TextIO, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
) -> None:
    """Read ``stdin`` on a daemon thread and put each line, then None at the end, on ``lines``.

    A daemon thread, not asyncio.to_thread: a read blocked on a terminal must
    not keep the process alive once the connection has closed. It also works
    for regular files, which the event loop cannot watch.
    """

    def pump() -> None:
        try:
            for line in stdin:
                loop.call_soon_threadsafe(lines.put_nowait, valid_text(line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass
        finally:
            try:
                loop.call_soon_threadsafe(lines.put_nowait, None)
            except RuntimeError:  # the event loop has closed, so no reader is left
                pass

    threading.Thread(target=pump, name="stdin-reader", daemon=True).start()


def _describe_error(error: OSError) -> str:
    # Some errors, such as a TLS handshake that the server closed, have an empty message.
    return error.strerror or str(error) or type(error).__name__


async def run_connect(
    url: str,
    headers: list[tuple[str, str]],
    pretty_json: bool,
    wait: float,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """Connect to ``url``, send the lines of ``stdin`` and print incoming messages.

    After standard input ends, messages are still printed for ``wait``
    seconds (forever when ``wait`` is -1 or infinite), then the client
    closes with 1000. Returns the exit status.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
    from websockets.protocol import State

    def status(text: str) -> None:
        print(text, file=stderr, flush=True)

    try:
        websocket = await connect(url, additional_headers=headers, max_size=None, open_timeout=15)
    except InvalidStatus as exc:
        response = exc.response
        body = response.body.decode("utf-8", "replace").strip() if response.body else ""
        detail = f": {body.splitlines()[0]}" if body else ""
        status(f"Error: the server rejected the handshake with HTTP {response.status_code} {response.reason_phrase}{detail}")
        return EXIT_FAILED
    except InvalidURI as exc:
        status(f"Error: invalid URL {url!r}: {exc}")
        return EXIT_FAILED
    except InvalidHandshake as exc:
        status(f"Error: the WebSocket handshake with {url} failed: {exc}")
        return EXIT_FAILED
    except TimeoutError:
        status(f"Error: connecting to {url} timed out after 15 s; check that the server is running")
        return EXIT_FAILED
    except OSError as exc:
        hint = "check that ampt-sandbox dev (or your server) is running on that address"
        if url.startswith("wss:"):
            hint += "; ampt-sandbox dev serves ws://, not wss://"
        status(f"Error: cannot connect to {url}: {_describe_error(exc)}; {hint}")
        return EXIT_FAILED

    if stdin.isatty():
        status(f"Connected to {url}; type a line and press Enter to send it, Ctrl-D to close")
    else:
        status(f"Connected to {url}")
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _start_stdin_reader(stdin, loop, lines)

    async def print_incoming() -> None:
        async for message in websocket:
            print(format_message(message, pretty_json), file=stdout, flush=True)

    async def send_lines() -> None:
        try:
            while (line := await lines.get()) is not None:
                await websocket.send(line)
        except ConnectionClosed:
            await asyncio.Future()  # the server closed: print_incoming reports it
        if wait == -1 or math.isinf(wait):
            await asyncio.Future()  # until the server closes
        await asyncio.sleep(wait)

    receiver = asyncio.create_task(print_incoming())
    sender = asyncio.create_task(send_lines())
    closed_by_client = False
    try:
        await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        if not receiver.done():
            closed_by_client = True
            await websocket.close(1000, "standard input ended")
    finally:
        # Also reached on Ctrl-C, which cancels this coroutine.
        for task in (receiver, sender):
            task.cancel()
        results = await asyncio.gather(receiver, sender, return_exceptions=True)
        if websocket.state is not State.CLOSED:
            closed_by_client = True
            await websocket.close(1000, "client interrupted")

    for result in results:
        if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
            status(f"Error: the connection to {url} failed: {result!r}")
            return EXIT_FAILED

    code = websocket.close_code
    status(describe_close(code, websocket.close_reason or ""))
    if closed_by_client:
        return 0
    return 0 if code in NORMAL_CLOSE_CODES else EXIT_FAILED


@app.command()
def connect(
    url: Annotated[str, typer.Argument(help="WebSocket URL, e.g. ws://127.0.0.1:8765/?name=ann")],
    pretty_json: Annotated[
        bool, typer.Option("--json", help="Pretty-print incoming messages that are JSON.")
    ] = False,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="Extra handshake header as 'Name: value'; repeatable."),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            help="Seconds to keep printing incoming messages after standard input ends, "
            "then close with 1000; -1 waits until the server closes."
        ),
    ] = DEFAULT_WAIT,
) -> None:
    """Send lines from standard input to URL and print the messages that arrive.

    Exits with 0 after a close with code 1000 or 1001, or a close that this
    client started. Exits with 1 when the server cannot be reached, rejects
    the handshake (the HTTP status is printed), or closes with another code.
    Ctrl-C closes the connection and exits with 130.
    """
    try:
        check_url(url)
        headers = [parse_header(text) for text in header or []]
        check_wait(wait)
    except ValueError as exc:
        fail(str(exc))

    # Bytes that are not valid UTF-8 become U+FFFD instead of ending the input.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")

    # A message may hold any character; a terminal that cannot show one gets an escape.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")

    try:
        code = asyncio.run(run_connect(url, headers, pretty_json, wait, sys.stdin, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        print("Interrupted: connection closed", file=sys.stderr, flush=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)
