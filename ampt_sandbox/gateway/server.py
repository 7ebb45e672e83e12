"""The gateway: owns the WebSocket server, the limits, the data store and the runtimes."""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.frames import Frame as WsFrame
from websockets.http11 import Request, Response

from ..channel.frames import Frame, Op, Status, encode_frame
from ..errors import DataError, WebSocketError
from ..limits import ConcurrencyGate, TokenBucket
from ..protocol.messages import escape_control
from .clients import Client, describe_close, new_connection_id, new_request_id
from .config import GatewayConfig
from .runtime_process import RuntimeProcess
from .static import PUBLIC_FOLDER, is_websocket_upgrade, respond_static
from .supervisor import HUNG_GRACE, Supervisor

logger = logging.getLogger("ampt_sandbox.gateway")
app_logger = logging.getLogger("ampt_sandbox.app")

PREVIEW_CHARS = 80

TOO_MANY_REQUESTS = "Too Many Requests"


@dataclass(slots=True)
class Invocation:
    request_id: int
    event: str
    connection_id: str
    frame: bytes
    runtime: RuntimeProcess | None
    started: float
    deadline: float
    limited: bool
    future: asyncio.Future[tuple[int, dict[str, Any]]] | None = None
    # Set when the watchdog kills the runtime because this invocation ran
    # past its timeout with the event loop blocked.
    timed_out: bool = False


class SandboxConnection(ServerConnection):
    """A server connection that drops clients which never finish their request."""

    gateway: Gateway
    client: Client | None = None
    request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.request_timer = self.loop.call_later(
            self.gateway.config.handshake_timeout, self._drop_slow_handshake
        )

    def process_event(self, event: Any) -> None:
        # API Gateway caps each frame at 32 KiB as well as each message at
        # 128 KiB; websockets' max_size covers the message only.
        if isinstance(event, WsFrame) and len(event.data) > self.gateway.config.max_frame_size:
            limit = self.gateway.config.max_frame_size
            if self.client is not None:
                self.client.mark_closing(
                    f"closed with 1009: a frame of {len(event.data)} bytes is over the {limit}-byte limit"
                )
            self.protocol.fail(CloseCode.MESSAGE_TOO_BIG, f"frame over {limit} bytes")
            self.send_data()
            return
        super().process_event(event)

    def _drop_slow_handshake(self) -> None:
        logger.info("Dropping a handshake that did not complete within %g s", self.gateway.config.handshake_timeout)
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.request_timer is not None:
            self.request_timer.cancel()
        client = self.client
        if client is not None and not client.open and not client.finished:
            # connected succeeded, but the socket closed before the handshake
            # response went out: the app still gets its disconnected call.
            client.finished = True
            self.gateway.end_client(client, "connection lost during the handshake")


def _preview(payload: bytes) -> str:
    text = payload[: PREVIEW_CHARS * 4].decode("utf-8", "replace")
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS] + "..."
    return escape_control(text)


class Gateway:
    def __init__(self, config: GatewayConfig, store: Any) -> None:
        self.config = config
        self.store = store
        self.loop = asyncio.get_running_loop()
        self.clients: dict[str, Client] = {}
        self.invocations: dict[int, Invocation] = {}
        self._request_ids = itertools.count(1)
        self.gate = ConcurrencyGate(config.limits.burst)
        self.bucket = (
            TokenBucket(config.limits.rate, self.loop.time()) if config.limits.rate else None
        )
        self.paused = False
        self.stopping = False
        self.server: Server | None = None
        self.port: int = config.port
        self.started_at = time.time()
        self.counters: Counter[str] = Counter()
        self._unlogged_throttles: Counter[str] = Counter()
        self._next_throttle_log = 0.0
        self._last_throttled = ""
        self.close_codes: Counter[int] = Counter()
        self.supervisor = Supervisor(self)
        self.stopped = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        if store is not None:
            store.on_change = self._on_data_change

    # State.

    @property
    def handlers(self) -> dict[str, float]:
        return self.supervisor.handlers

    @property
    def state(self) -> str:
        if self.paused:
            return "paused"
        return "active" if self.supervisor.loaded else "inactive"

    @property
    def url(self) -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}"

    # Start and stop.

    async def start(self) -> None:
        """Bind the port; raises OSError when it is taken."""
        config = self.config

        def create_connection(*args: Any, **kwargs: Any) -> SandboxConnection:
            connection = SandboxConnection(*args, **kwargs)
            connection.gateway = self
            return connection

        self.server = await serve(
            self._serve_client,
            config.host,
            config.port,
            process_request=self._process_request,
            create_connection=create_connection,
            compression=None,
            max_size=config.max_message_size,
            # The connected handler runs inside the handshake, for up to 60 s;
            # slow clients are dropped by SandboxConnection's own timer.
            open_timeout=config.handshake_timeout + 60,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            close_timeout=5,
            server_header="ampt-sandbox",
        )
        sockets = list(self.server.sockets)
        self.port = sockets[0].getsockname()[1]
        self._watchdog = asyncio.create_task(self._watch())
        logger.info("Listening on %s", self.url)

    async def shutdown(self) -> None:
        """Stop as the cloud would: finish work, close clients with 1001, run disconnected."""
        if self.stopping:
            await self.stopped.wait()
            return
        self.stopping = True
        logger.info("Shutting down: %d connections, %d invocations in flight", len(self.clients), len(self.invocations))
        if self.server is not None:
            self.server.close(close_connections=False)

        await self._wait_for_invocations(self.config.shutdown_grace)

        for client in list(self.clients.values()):
            client.close(CloseCode.GOING_AWAY, "sandbox shutting down", "sandbox shut down (1001)")
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 10)

        # Handlers still running had their grace period and are not waited
        # for again. The disconnected handlers, and the data events they
        # cause, are each bounded by their own timeout.
        abandoned = [inv for inv in self.invocations.values() if inv.event not in ("disconnected", "data")]
        if abandoned:
            logger.warning(
                "Stopping without waiting for %d handlers still running after %g s: %s",
                len(abandoned), self.config.shutdown_grace,
                ", ".join(f"{inv.event} for {inv.connection_id}" for inv in abandoned[:10]),
            )
        final_events = ("disconnected", "data")
        final_timeout = max((self.handlers.get(event, 0.0) for event in final_events), default=0.0) or 5.0
        await self._wait_for_invocations(final_timeout + HUNG_GRACE, final_events)
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.supervisor.stop()
        if self.store is not None:
            self.store.close()
        self.stopped.set()
        logger.info("Stopped")

    async def _wait_for_invocations(self, seconds: float, events: tuple[str, ...] | None = None) -> None:
        """Wait up to ``seconds`` until no invocation (of ``events``, when given) is in flight."""
        deadline = self.loop.time() + seconds
        while self.loop.time() < deadline:
            if not any(events is None or inv.event in events for inv in self.invocations.values()):
                return
            await asyncio.sleep(0.02)

    # Handshake.

    async def _process_request(self, connection: SandboxConnection, request: Request) -> Response | None:
        if connection.request_timer is not None:
            connection.request_timer.cancel()
        if not is_websocket_upgrade(request.headers.get_all("Upgrade")):
            return await asyncio.to_thread(respond_static, self.config.app.parent / PUBLIC_FOLDER, request)
        if self.stopping:
            return _respond(connection, http.HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable: the sandbox is shutting down")
        if self.state != "active":
            self.counters["rejected_403"] += 1
            reason = "the sandbox is paused" if self.paused else self.supervisor.inactive_reason
            return _respond(connection, http.HTTPStatus.FORBIDDEN, f"Forbidden: {reason}")
        if self.gate.full:
            self.counters["rejected_429"] += 1
            logger.warning("Rejected a connection: burst limit of %s requests in flight reached", self.gate.limit)
            response = _respond(connection, http.HTTPStatus.TOO_MANY_REQUESTS, TOO_MANY_REQUESTS)
            response.headers["Retry-After"] = "1"
            return response

        connection_id = new_connection_id()
        meta = {
            "connected_at": int(time.time() * 1000),
            "query_string_parameters": _query_parameters(request.path),
            "headers": _header_dict(request.headers),
        }
        client = Client(connection_id, connection, meta, self.loop.time(), self._on_client_closing)

        if "connected" in self.handlers:
            self.gate.try_enter()
            invocation = self._invoke(
                Op.CONNECTED, "connected", connection_id, json.dumps({"meta": meta}).encode(), limited=True, wait=True
            )
            assert invocation.future is not None
            status, _detail = await invocation.future
            if status != Status.OK:
                self.counters["rejected_500"] += 1
                return _respond(connection, http.HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error")
        connection.client = client
        return None

    # Connection life.

    async def _serve_client(self, websocket: ServerConnection) -> None:
        client: Client | None = getattr(websocket, "client", None)
        if client is None:
            return
        client.open = True
        self.clients[client.id] = client
        client.writer = asyncio.create_task(client.write_forever())
        self.supervisor.broadcast(encode_frame(Op.OPENED, connection_id=client.id))
        self.counters["connections"] += 1
        logger.info("Connected %s (%d open)", client.id, len(self.clients))

        message_handler = "message" in self.handlers
        try:
            while True:
                message = await websocket.recv()
                if type(message) is not str:
                    self.counters["binary_rejected"] += 1
                    logger.warning("Closing %s with 1003: it sent a binary frame, and the platform supports text only", client.id)
                    client.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported", "closed with 1003: the client sent a binary frame")
                    break
                self._on_message(client, message)
                if not message_handler:
                    message_handler = "message" in self.handlers
        except ConnectionClosed:
            pass
        finally:
            if not client.finished:
                client.finished = True
                with contextlib.suppress(Exception):
                    await websocket.wait_closed()
                self.end_client(client, describe_close(websocket, client.close_reason))

    def _on_message(self, client: Client, text: str) -> None:
        now = self.loop.time()
        client.last_activity = now
        client.messages_in += 1
        self.counters["messages_in"] += 1
        payload = text.encode("utf-8")
        if logger.isEnabledFor(logging.INFO):
            logger.info("Message from %s (%d bytes): %s", client.id, len(payload), _preview(payload))

        if "message" not in self.handlers:
            self.counters["messages_unhandled"] += 1
            return
        if self.gate.full or (self.bucket is not None and not self.bucket.take(now)):
            self._throttle(client, "burst" if self.gate.full else "rate")
            return
        self.gate.try_enter()
        self._invoke(Op.MESSAGE, "message", client.id, payload, limited=True)

    def _throttle(self, client: Client, which: str) -> None:
        self.counters["throttled"] += 1
        self.counters[f"throttled_{which}"] += 1
        self._unlogged_throttles[which] += 1
        self._last_throttled = client.id
        if self.loop.time() >= self._next_throttle_log:
            self._log_throttles()
        body = {"message": TOO_MANY_REQUESTS, "connectionId": client.id, "requestId": new_request_id()}
        self._enqueue(client, json.dumps(body, separators=(",", ":")).encode())

    def _log_throttles(self) -> None:
        # Under load the limits can reject thousands of messages a second, so
        # one line a second sums them up.
        for which, count in self._unlogged_throttles.items():
            if count == 1:
                logger.warning("Throttled a message from %s: %s limit reached", self._last_throttled, which)
            elif count:
                logger.warning(
                    "Throttled %d messages: %s limit reached (the last from %s)", count, which, self._last_throttled
                )
        self._unlogged_throttles.clear()
        self._next_throttle_log = self.loop.time() + 1.0

    def end_client(self, client: Client, reason: str) -> None:
        """Forget a closed connection and run its disconnected handler."""
        client.open = False
        self.clients.pop(client.id, None)
        if client.writer is not None:
            client.writer.cancel()
        code = client.websocket.close_code
        if code is not None:
            self.close_codes[int(code)] += 1
        self.counters["disconnections"] += 1
        logger.info("Disconnected %s: %s", client.id, reason)
        if "disconnected" in self.handlers:
            self._invoke(
                Op.DISCONNECTED, "disconnected", client.id, json.dumps({"reason": reason}).encode(), limited=False
            )
        else:
            self.supervisor.broadcast(encode_frame(Op.DISCONNECTED, b'{"reason":null}', connection_id=client.id))

    def _on_client_closing(self, client: Client) -> None:
        # Runtimes stop treating the connection as open, so ws.send to it
        # raises InvalidConnectionError instead of dropping the message.
        if client.open:
            self.supervisor.broadcast(encode_frame(Op.CLOSING, connection_id=client.id))

    def _enqueue(self, client: Client, payload: bytes) -> None:
        if client.close_reason is not None:
            # The gateway is closing this connection, so its writer sends
            # nothing more. Queueing would only fill the queue again and
            # repeat the 1008 close of a client that stopped reading.
            self.counters["messages_dropped_closing"] += 1
            return
        client.enqueue(payload)
        if client.queued_bytes > self.config.max_send_queue:
            self.counters["send_queue_overflow"] += 1
            logger.warning(
                "Closing %s with 1008: %d bytes queued for it, more than the %d-byte limit; the client is not reading",
                client.id, client.queued_bytes, self.config.max_send_queue,
            )
            client.queue.clear()
            client.queued_bytes = 0
            client.close(
                CloseCode.POLICY_VIOLATION,
                "send queue limit exceeded: the client is not reading",
                "closed with 1008: more than the send queue limit was waiting for the client",
            )

    # Invocations.

    def _invoke(
        self, op: Op, event: str, connection_id: str, payload: bytes, *, limited: bool, wait: bool = False
    ) -> Invocation:
        request_id = next(self._request_ids) & 0xFFFFFFFF
        frame = encode_frame(op, payload, request_id=request_id, connection_id=connection_id)
        # The supervisor sets started and deadline when a runtime receives it.
        invocation = Invocation(
            request_id, event, connection_id, frame, None, 0.0, 0.0, limited,
            self.loop.create_future() if wait else None,
        )
        self.invocations[request_id] = invocation
        self.supervisor.submit(invocation)
        return invocation

    def finish_invocation(self, invocation: Invocation, status: int, detail: dict[str, Any]) -> None:
        self.invocations.pop(invocation.request_id, None)
        if invocation.limited:
            self.gate.leave()
        if status == Status.OK:
            self.counters["invocations_ok"] += 1
        elif status == Status.TIMEOUT:
            self.counters["handler_timeouts"] += 1
            app_logger.warning(
                "The %s handler timed out for connection %s: %s", invocation.event, invocation.connection_id,
                detail.get("error", ""),
            )
        else:
            self.counters["handler_errors"] += 1
        if status not in (Status.OK, Status.TIMEOUT) and not detail.get("logged"):
            app_logger.error(
                "The %s handler failed for connection %s: %s\n%s", invocation.event, invocation.connection_id,
                detail.get("error", ""), detail.get("traceback", "").rstrip(),
            )
        if invocation.future is not None and not invocation.future.done():
            invocation.future.set_result((status, detail))

    def on_frames(self, runtime: RuntimeProcess, frames: list[Frame]) -> None:
        """Handle the frames a runtime sent: DONE, SEND, CALL and LOG."""
        for frame in frames:
            op = frame.op
            if op == Op.SEND:
                self._on_send(runtime, frame)
            elif op == Op.DONE:
                invocation = self.invocations.get(frame.request_id)
                if invocation is not None:
                    detail = json.loads(frame.payload) if frame.payload else {}
                    self.finish_invocation(invocation, frame.flags, detail)
            elif op == Op.CALL:
                self._on_call(runtime, frame)
            elif op == Op.LOG:
                body = json.loads(frame.payload)
                level = logging.getLevelName(body.get("level", "INFO"))
                logging.getLogger(body.get("logger", "ampt_sandbox.app")).log(
                    level if isinstance(level, int) else logging.INFO, "%s", body.get("message", "")
                )
            else:
                logger.error("Ignoring a frame with unknown op %#x from runtime %d", op, runtime.number)

    def _on_send(self, runtime: RuntimeProcess, frame: Frame) -> None:
        client = self.clients.get(frame.connection_id)
        if client is None or not client.connected:
            if frame.request_id:
                runtime.write(encode_frame(Op.RESULT, request_id=frame.request_id, flags=Status.NOT_CONNECTED))
            else:
                logger.info("Dropped a message to %s: the connection is closed or closing", frame.connection_id)
            return
        self.counters["messages_out"] += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info("Send to %s (%d bytes): %s", client.id, len(frame.payload), _preview(frame.payload))
        self._enqueue(client, frame.payload)
        if frame.request_id:
            runtime.write(encode_frame(Op.RESULT, b'{"result":null}', request_id=frame.request_id))

    def _on_call(self, runtime: RuntimeProcess, frame: Frame) -> None:
        try:
            request = json.loads(frame.payload)
            result = self.call(request["method"], request.get("params") or {})
        except (DataError, WebSocketError) as exc:
            body = {"error": {"type": type(exc).__name__, "message": str(exc)}}
            runtime.write(encode_frame(Op.RESULT, _json(body), request_id=frame.request_id, flags=Status.ERROR))
            return
        except Exception as exc:  # noqa: BLE001 - report to the caller, keep the gateway up
            logger.exception("Call from runtime %d failed", runtime.number)
            body = {"error": {"type": "DataError", "message": f"internal error in the gateway: {exc}"}}
            runtime.write(encode_frame(Op.RESULT, _json(body), request_id=frame.request_id, flags=Status.ERROR))
            return
        runtime.write(encode_frame(Op.RESULT, _json({"result": result}), request_id=frame.request_id))

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Run one management or data call; raises WebSocketError or DataError."""
        if method == "ws.is_connected":
            client = self.clients.get(params.get("connection_id", ""))
            return client is not None and client.connected
        if method == "ws.close":
            missing = []
            for connection_id in params.get("connection_ids", []):
                client = self.clients.get(connection_id)
                if client is None or not client.open:
                    missing.append(connection_id)
                    continue
                logger.info("Closing %s: ws.close called by the app", connection_id)
                client.close(CloseCode.NORMAL_CLOSURE, "closed by the app", "closed by the app (ws.close)")
            if missing:
                raise WebSocketError(f"Connection {', '.join(missing)} is not connected")
            return None
        if method.startswith("data."):
            if self.store is None:
                raise DataError("the data store is not open")
            return self.store.call(method.removeprefix("data."), params)
        raise WebSocketError(f"unknown method {method!r}")

    def _on_data_change(self, event: dict[str, Any]) -> None:
        if self.supervisor.data_events:
            self._invoke(Op.DATA_EVENT, "data", "", _json(event), limited=False)

    # Periodic checks: hung runtimes, idle and old connections.

    async def _watch(self) -> None:
        config = self.config
        next_store_tick = self.loop.time() + 1.0
        while True:
            await asyncio.sleep(0.25)
            now = self.loop.time()
            if self._unlogged_throttles and now >= self._next_throttle_log:
                self._log_throttles()
            if self.store is not None and now >= next_store_tick:
                next_store_tick = now + 1.0
                self._tick_store()
            for invocation in list(self.invocations.values()):
                runtime = invocation.runtime
                if runtime is not None and now > invocation.deadline and runtime.alive:
                    logger.error(
                        "Runtime %d did not finish the %s handler for %s within its timeout; "
                        "its event loop is blocked, so it is being replaced",
                        runtime.number, invocation.event, invocation.connection_id or "-",
                    )
                    invocation.timed_out = True
                    runtime.kill()
            for client in list(self.clients.values()):
                if not client.open or client.close_reason is not None:
                    continue
                if config.idle_timeout and now - client.last_activity > config.idle_timeout:
                    client.close(CloseCode.GOING_AWAY, "idle timeout", f"closed with 1001: idle for more than {config.idle_timeout:g} s")
                elif config.max_connection_age and now - client.opened_at > config.max_connection_age:
                    client.close(
                        CloseCode.GOING_AWAY, "maximum connection duration reached",
                        f"closed with 1001: open for more than {config.max_connection_age:g} s",
                    )

    def _tick_store(self) -> None:
        # Expired items are deleted here so their deleted events reach
        # data.on handlers, and a periodic fsync bounds what a power loss
        # could take to about a second of writes.
        try:
            expired = self.store.expire()
            self.store.flush()
        except Exception:  # noqa: BLE001 - keep serving; the next tick retries
            logger.exception("Periodic maintenance of the data store failed")
            return
        if expired:
            logger.info("Deleted %d expired items from the data store", expired)

    def live_connection_ids(self) -> list[str]:
        return [client.id for client in self.clients.values() if client.open]


def _respond(connection: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
    return connection.respond(status, text + "\n")


def _query_parameters(path: str) -> dict[str, str] | None:
    query = urlsplit(path).query
    if not query:
        return None
    # Like API Gateway, the last value of a repeated parameter wins.
    return dict(parse_qsl(query, keep_blank_values=True))


def _header_dict(headers: Headers) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in headers.raw_items():
        result[name] = f"{result[name]},{value}" if name in result else value
    return result


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
