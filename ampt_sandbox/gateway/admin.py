"""The management API: a small HTTP/1.1 JSON API on 127.0.0.1 that the CLI uses.

Routes, each of which needs the header ``Authorization: Bearer <token>``::

    GET    /status                 what the sandbox is doing (see docs/status.md)
    GET    /connections            the live connections
    GET    /connections/{id}       one connection, with its handshake headers
    POST   /connections/{id}       send {"message": "<text>"} to it as a text frame
    DELETE /connections/{id}       close it with 1000
    POST   /pause, /resume         reject new handshakes with 403, or accept them again
    POST   /data/{method}          run data.get, set, add, remove or get_by_label;
                                   the body is the call's parameters
    POST   /data/import, /export   the data commands, on the store this process owns:
                                   {"path": "<absolute path>", "overwrite": false}

As in the cloud's connection management API (API Gateway's ``@connections``),
GET, POST and DELETE on a connection read it, send to it and close it.

Who may call it: the token is random per run and stored only in the state
file, which only its owner can read. A request that carries an ``Origin``
header comes from a web page, so it gets 403 whatever its token, and a
``Host`` other than the loopback address blocks DNS rebinding the same way.
The token never appears in a log line or a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import http
import http.client
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from ..errors import DataError, ValidationError, WebSocketError
from ..protocol.messages import MAX_MESSAGE_BYTES, encode_text
from .statefile import SandboxState, now_iso

if TYPE_CHECKING:
    from .clients import Client
    from .runtime_process import LoadResult
    from .server import Gateway

logger = logging.getLogger("ampt_sandbox.gateway.admin")

ADMIN_HOST = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# A request must arrive whole within this time.
REQUEST_TIMEOUT = 10.0
MAX_HEADER_BYTES = 16 * 1024
# A batch data.set of 25 items of 400 KB each, JSON-escaped, fits.
MAX_BODY_BYTES = 16 * 1024 * 1024
# The data calls the API runs; everything else in the store stays private.
DATA_METHODS = frozenset({"get", "get_by_label", "set", "add", "remove"})
# The import and export of the data commands, on files named by absolute path.
DATA_FILE_COMMANDS = frozenset({"import", "export"})
# The change events of an import that the event loop delivers before it serves others.
EVENTS_PER_TURN = 500
# How long a connection stays open after the response, for the client to close it.
LINGER_SECONDS = 1.0
# Rejected requests are logged at most this often, with a count of the others.
REJECTION_LOG_INTERVAL = 5.0


@dataclass(frozen=True)
class LoadRecord:
    """The outcome of the latest import of the app by ``dev``."""

    reason: str
    ok: bool
    error: str | None
    at: str


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HTTPError(Exception):
    """A request that ends with an error status and a JSON error body."""

    def __init__(self, status: http.HTTPStatus, message: str, kind: str = "Error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}


class AdminServer:
    """The management API of one ``dev`` run, bound to 127.0.0.1 on a free port."""

    def __init__(self, gateway: Gateway, token: str | None = None) -> None:
        self.gateway = gateway
        self.token = token or secrets.token_urlsafe(32)
        self.pid = os.getpid()
        self.started_at = now_iso()
        self.last_load: LoadRecord | None = None
        self.port = 0
        self.server: asyncio.Server | None = None
        self._rejected_since_log = 0
        self._rejection_logged_at = 0.0

    @property
    def url(self) -> str:
        return f"http://{ADMIN_HOST}:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, ADMIN_HOST, 0, limit=MAX_HEADER_BYTES)
        self.port = self.server.sockets[0].getsockname()[1]
        logger.info("Management API listening on %s", self.url)

    async def close(self) -> None:
        if self.server is None:
            return
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    def state(self) -> SandboxState:
        """Return what the state file records about this run."""
        config = self.gateway.config
        return SandboxState(
            pid=self.pid,
            url=self.gateway.url,
            admin_url=self.url,
            token=self.token,
            started_at=self.started_at,
            app=str(config.app),
            data_dir=str(config.data_dir),
        )

    def record_load(self, reason: str, result: LoadResult) -> None:
        self.last_load = LoadRecord(reason, result.ok, None if result.ok else result.error, now_iso())

    # One request per TCP connection: read, dispatch, respond, close.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(self._receive(reader), REQUEST_TIMEOUT)
                status, body, headers = await self._dispatch(request)
            except HTTPError as exc:
                status, headers = exc.status, exc.headers
                body = {"error": {"type": exc.kind, "message": exc.message}}
            except TimeoutError:
                status, headers = http.HTTPStatus.REQUEST_TIMEOUT, {}
                body = {"error": {"type": "Error", "message": f"the request did not arrive within {REQUEST_TIMEOUT:g} s"}}
            except (ConnectionError, asyncio.IncompleteReadError):
                raise
            except Exception as exc:  # noqa: BLE001 - a bug in one route must not leave the caller waiting
                logger.exception("A management API request failed")
                status, headers = http.HTTPStatus.INTERNAL_SERVER_ERROR, {}
                body = {"error": {"type": "Error", "message": f"internal error in the sandbox: {exc}"}}
            writer.write(_encode_response(status, body, headers))
            await writer.drain()
            # Closing with unread input would reset the connection and could
            # destroy the response before the client reads it, so half-close
            # and read the rest until the client closes.
            if writer.can_write_eof():
                writer.write_eof()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_discard(reader), LINGER_SECONDS)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _receive(self, reader: asyncio.StreamReader) -> Request:
        """Read a request, checking its caller before its body, which may be 16 MiB."""
        request, length = await _read_head(reader)
        self._check_caller(request)
        if length:
            request.body = await reader.readexactly(length)
        return request

    async def _dispatch(self, request: Request) -> tuple[http.HTTPStatus, Any, dict[str, str]]:
        parts = [unquote(part) for part in request.path.split("?", 1)[0].strip("/").split("/")]
        method = request.method
        status = http.HTTPStatus.OK

        if parts == ["status"]:
            _allow(method, "GET")
            body = status_snapshot(self.gateway, self)
        elif parts == ["connections"]:
            _allow(method, "GET")
            now = self.gateway.loop.time()
            clients = [client for client in self.gateway.clients.values() if client.open]
            body = {"connections": [connection_info(client, now) for client in clients]}
        elif len(parts) == 2 and parts[0] == "connections":
            body = self._on_connection(method, parts[1], request)
        elif parts in (["pause"], ["resume"]):
            _allow(method, "POST")
            body = self._set_paused(parts[0] == "pause")
        elif len(parts) == 2 and parts[0] == "data":
            _allow(method, "POST")
            body = await self._on_data(parts[1], request)
        else:
            raise HTTPError(http.HTTPStatus.NOT_FOUND, f"no such resource: {request.path}")
        logger.debug("Management API: %s %s -> %d", method, request.path, status)
        return status, body, {}

    def _check_caller(self, request: Request) -> None:
        # A browser adds Origin to every cross-site request and to same-site
        # ones other than GET; a command line client never sends it.
        origin = request.headers.get("origin")
        if origin is not None:
            self._note_rejection(f"it carries an Origin header ({origin[:100]}), so it comes from a web page")
            raise HTTPError(http.HTTPStatus.FORBIDDEN, "requests from web pages (with an Origin header) are not allowed")
        host = request.headers.get("host", "")
        if _host_name(host) not in LOOPBACK_HOSTS:
            self._note_rejection(f"its Host header is {host[:100]!r}, not the loopback address")
            raise HTTPError(http.HTTPStatus.FORBIDDEN, "the Host header must name the loopback address")
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self.token.encode()):
            self._note_rejection("the bearer token is missing or wrong")
            raise HTTPError(
                http.HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token; the ampt-sandbox commands read it from the state file",
                headers={"WWW-Authenticate": 'Bearer realm="ampt-sandbox"'},
            )

    def _note_rejection(self, why: str) -> None:
        self._rejected_since_log += 1
        now = time.monotonic()
        if now - self._rejection_logged_at < REJECTION_LOG_INTERVAL:
            return
        others = self._rejected_since_log - 1
        suffix = f" ({others} more rejected since the last warning)" if others else ""
        logger.warning("Rejected a management API request: %s%s", why, suffix)
        self._rejected_since_log = 0
        self._rejection_logged_at = now

    def _on_connection(self, method: str, connection_id: str, request: Request) -> Any:
        gateway = self.gateway
        client = gateway.clients.get(connection_id)
        if client is None or not client.open:
            raise HTTPError(
                http.HTTPStatus.NOT_FOUND, f"Connection {connection_id} is not connected", "InvalidConnectionError"
            )
        if method == "GET":
            return connection_info(client, gateway.loop.time(), headers=True)
        if method == "POST":
            return self._send(client, request)
        if method == "DELETE":
            logger.info("Closing %s: requested through the management API", client.id)
            client.close(1000, "closed by the management API", "closed through the management API")
            return {"closed": client.id}
        raise HTTPError(
            http.HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here; use GET, POST or DELETE",
            headers={"Allow": "GET, POST, DELETE"},
        )

    def _send(self, client: Client, request: Request) -> Any:
        body = _json_body(request)
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str):
            raise HTTPError(http.HTTPStatus.BAD_REQUEST, 'the body must be a JSON object {"message": "<text>"}')
        payload = encode_text(message)
        if len(payload) > MAX_MESSAGE_BYTES:
            raise HTTPError(
                http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the message is {len(payload)} bytes and the maximum is {MAX_MESSAGE_BYTES} bytes (128 KiB)",
                "WebSocketError",
            )
        gateway = self.gateway
        gateway.counters["messages_out"] += 1
        logger.info("Send to %s through the management API (%d bytes)", client.id, len(payload))
        gateway._enqueue(client, payload)
        return {"sent": client.id, "bytes": len(payload)}

    def _set_paused(self, paused: bool) -> Any:
        gateway = self.gateway
        if gateway.paused != paused:
            gateway.paused = paused
            if paused:
                logger.warning("Paused through the management API: new connections get HTTP 403 until resumed")
            else:
                logger.info("Resumed through the management API: new connections are accepted again")
        return {"state": gateway.state}

    async def _on_data(self, name: str, request: Request) -> Any:
        if name not in DATA_METHODS and name not in DATA_FILE_COMMANDS:
            known = ", ".join(sorted(DATA_METHODS | DATA_FILE_COMMANDS))
            raise HTTPError(http.HTTPStatus.NOT_FOUND, f"unknown data method {name!r}; use one of: {known}")
        if self.gateway.stopping:
            # The store is flushed and closed during the shutdown.
            raise HTTPError(http.HTTPStatus.SERVICE_UNAVAILABLE, "the sandbox is shutting down")
        params = _json_body(request)
        if not isinstance(params, dict):
            raise HTTPError(http.HTTPStatus.BAD_REQUEST, "the body must be a JSON object of the call's parameters")
        with _data_errors():
            if name in DATA_FILE_COMMANDS:
                return await self._transfer(name, params)
            return {"result": self.gateway.call(f"data.{name}", params)}

    async def _transfer(self, name: str, params: dict[str, Any]) -> Any:
        """Run the data commands' own import or export on the store that this process owns.

        A file of hundreds of megabytes takes seconds to parse or write, so
        the work runs on a worker thread and the event loop keeps serving
        WebSockets. The store serialises calls with its own lock. The
        import's change events call into the gateway, which only the event
        loop may touch, so the import queues them and the loop delivers them
        once the import is done.
        """
        from ..cli.data_commands import export_file, import_file

        path, overwrite = params.get("path"), params.get("overwrite", False)
        if not isinstance(path, str) or not Path(path).is_absolute() or not isinstance(overwrite, bool):
            raise HTTPError(
                http.HTTPStatus.BAD_REQUEST,
                'the body must be {"path": "<absolute path>", "overwrite": true or false}',
            )
        store = self.gateway.store
        if name == "export":
            written, count = await asyncio.to_thread(export_file, store, path, overwrite=overwrite)
            logger.info("Exported %d items to %s through the management API", count, written)
            return {"path": str(written), "count": count}

        result = await asyncio.to_thread(import_file, store, Path(path), overwrite=overwrite, defer_events=True)
        while store.deliver_events(EVENTS_PER_TURN):
            await asyncio.sleep(0)
        logger.info("Imported %d items from %s through the management API", result.imported, path)
        live = set(self.gateway.live_connection_ids())
        deleted_live = sum(1 for key in result.deleted_connections if key.split(":", 1)[1] in live)
        if deleted_live:
            logger.warning(
                "The import with overwrite deleted the connection:* records of %d live connections; "
                "their sockets stay open, but the app has lost their records",
                deleted_live,
            )
        return {
            "imported": result.imported,
            "deleted": result.deleted,
            "deleted_connections": result.deleted_connections,
            "deleted_live_connections": deleted_live,
        }


@contextlib.contextmanager
def _data_errors() -> Iterator[None]:
    """Turn the errors of a data call into HTTP errors that keep the exception's class name."""
    from ..cli.data_commands import CommandError

    try:
        yield
    except (ValidationError, CommandError, WebSocketError) as exc:
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, str(exc), type(exc).__name__) from None
    except DataError as exc:
        raise HTTPError(http.HTTPStatus.CONFLICT, str(exc), type(exc).__name__) from None


def status_snapshot(gateway: Gateway, admin: AdminServer) -> dict[str, Any]:
    """Return the ``status`` document; docs/status.md describes each field."""
    counters = gateway.counters
    limits = gateway.config.limits
    supervisor = gateway.supervisor
    state = "stopping" if gateway.stopping else gateway.state
    rejected = {
        "403": counters["rejected_403"],
        "429": counters["rejected_429"],
        "500": counters["rejected_500"],
    }
    last_load = admin.last_load
    return {
        "running": True,
        "pid": admin.pid,
        "url": gateway.url,
        "admin_url": admin.url,
        "app": str(gateway.config.app),
        "data_dir": str(gateway.config.data_dir),
        "environment": gateway.config.env,
        "limits": {"burst": limits.burst, "rate": limits.rate},
        "state": state,
        "inactive_reason": supervisor.inactive_reason if state == "inactive" else None,
        "started_at": admin.started_at,
        "uptime_seconds": round(time.time() - gateway.started_at, 3),
        "connections": sum(1 for client in gateway.clients.values() if client.open),
        "connections_total": counters["connections"],
        "connections_rejected": sum(rejected.values()),
        "connections_rejected_by_status": rejected,
        "messages_received": counters["messages_in"],
        "messages_sent": counters["messages_out"],
        "messages_throttled": counters["throttled"],
        "invocations_in_flight": len(gateway.invocations),
        "handler_errors": counters["handler_errors"],
        "handler_timeouts": counters["handler_timeouts"],
        "reloads": supervisor.reloads,
        "restarts": supervisor.restarts,
        "last_load": None if last_load is None else {
            "reason": last_load.reason, "ok": last_load.ok, "error": last_load.error, "at": last_load.at,
        },
        "data_items": _data_item_count(gateway.store),
    }


def connection_info(client: Client, now: float, headers: bool = False) -> dict[str, Any]:
    """Describe one connection; ``now`` is the event loop's clock."""
    info = {
        "connection_id": client.id,
        "connected_at": client.connected_at,
        "connected_seconds": round(now - client.opened_at, 3),
        "idle_seconds": round(now - client.last_activity, 3),
        "messages_received": client.messages_in,
        "messages_sent": client.messages_out,
        "queued_bytes": client.queued_bytes,
        "query_string_parameters": client.meta.get("query_string_parameters"),
    }
    if headers:
        info["headers"] = client.meta.get("headers")
    return info


def _data_item_count(store: Any) -> int | None:
    count: Callable[[], int] | None = getattr(store, "count", None)
    if count is None:
        return None
    try:
        return count()
    except (DataError, OSError) as exc:
        logger.warning("Could not count the data items: %s", exc)
        return None


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise HTTPError(
            http.HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here; use {allowed}", headers={"Allow": allowed}
        )


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _json_body(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return json.loads(request.body)
    except ValueError as exc:
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPError(
            http.HTTPStatus.BAD_REQUEST, "the body is not valid JSON: its arrays or objects are nested too deeply"
        ) from None


async def _read_head(reader: asyncio.StreamReader) -> tuple[Request, int]:
    """Read the request line and headers; return the request without its body, and the body's length."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HTTPError(
            http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"the request head is larger than {MAX_HEADER_BYTES} bytes"
        ) from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HTTPError(http.HTTPStatus.BAD_REQUEST, "invalid request line") from None
    if not version.startswith("HTTP/1."):
        raise HTTPError(http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"{version} is not supported; use HTTP/1.1")

    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise HTTPError(http.HTTPStatus.BAD_REQUEST, "invalid header line")
        headers[name.strip().lower()] = value.strip()

    if "transfer-encoding" in headers:
        raise HTTPError(http.HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported; send Content-Length")
    length = _content_length(headers.get("content-length", "0"))
    return Request(method.upper(), target, headers, b""), length


def _content_length(text: str) -> int:
    # RFC 9110 allows only ASCII digits here; int() would also take a sign,
    # underscores and non-ASCII digits.
    if not (text.isascii() and text.isdigit()):
        raise HTTPError(
            http.HTTPStatus.BAD_REQUEST, f"invalid Content-Length {text[:40]!r}: it must be a number of bytes"
        )
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise HTTPError(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is larger than {MAX_BODY_BYTES} bytes")
    return length


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def _encode_response(status: http.HTTPStatus, body: Any, headers: dict[str, str]) -> bytes:
    content = json.dumps(body, ensure_ascii=False, default=_json_default).encode("utf-8", "replace")
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(content)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# The client side, used by the CLI commands.


class AdminUnavailable(Exception):
    """The management API did not respond: the sandbox stopped, hangs or was replaced."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        # A refused connection proves that nothing listens on the address.
        self.refused = refused


class AdminError(Exception):
    """The management API returned an error status."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class AdminClient:
    """Calls the management API of the sandbox that a state file describes."""

    def __init__(self, state: SandboxState, timeout: float = 10.0) -> None:
        parts = urlsplit(state.admin_url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.port is None:
            # The token must never leave this machine.
            raise ValueError(f"the management API address {state.admin_url!r} is not an http:// loopback address")
        self.host = parts.hostname
        self.port = parts.port
        self._token = state.token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request and return the decoded JSON body.

        Raises:
            AdminUnavailable: no connection, or no response within the timeout.
            AdminError: the API returned an error status.
        """
        content = None if body is None else json.dumps(body).encode("ascii")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=content, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except TimeoutError:
            raise AdminUnavailable(
                f"the management API at {self.host}:{self.port} did not respond within {self.timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            raise AdminUnavailable(
                f"nothing accepts connections at the management API address {self.host}:{self.port}", refused=True
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise AdminUnavailable(f"cannot reach the management API at {self.host}:{self.port}: {exc}") from None
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            raise AdminError(response.status, "Error", f"the management API sent invalid JSON (HTTP {response.status})") from None
        if response.status >= 400:
            error = decoded.get("error", {}) if isinstance(decoded, dict) else {}
            raise AdminError(response.status, error.get("type", "Error"), error.get("message", f"HTTP {response.status}"))
        return decoded

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/status")

    def connections(self) -> list[dict[str, Any]]:
        return self.request("GET", "/connections")["connections"]

    def connection(self, connection_id: str) -> dict[str, Any]:
        return self.request("GET", _connection_path(connection_id))

    def send(self, connection_id: str, message: str) -> dict[str, Any]:
        return self.request("POST", _connection_path(connection_id), {"message": message})

    def close(self, connection_id: str) -> dict[str, Any]:
        return self.request("DELETE", _connection_path(connection_id))

    def set_paused(self, paused: bool) -> dict[str, Any]:
        return self.request("POST", "/pause" if paused else "/resume", {})

    def data(self, method: str, params: dict[str, Any]) -> Any:
        return self.request("POST", f"/data/{quote(method, safe='')}", params)["result"]

    def import_file(self, path: Path, overwrite: bool = False) -> dict[str, Any]:
        return self.request("POST", "/data/import", {"path": str(path.resolve()), "overwrite": overwrite})

    def export_file(self, path: Path, overwrite: bool = False) -> dict[str, Any]:
        return self.request("POST", "/data/export", {"path": str(path.resolve()), "overwrite": overwrite})


def _connection_path(connection_id: str) -> str:
    return "/connections/" + quote(connection_id, safe="")
