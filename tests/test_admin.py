"""The management API of a real ``ampt-sandbox dev``: who may call it, and each route."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import stat
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, Sandbox
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ampt_sandbox.gateway.admin import AdminClient, AdminError, AdminServer
from ampt_sandbox.gateway.statefile import SandboxState

APP = """
from ampt_sandbox import ws

@ws.on("message")
async def message(connection, message):
    await connection.send(message)

@ws.on("disconnected")
async def disconnected(connection, reason):
    print("DISCONNECTED", connection.connection_id, "|", reason)
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("admin")
    app = root / "app.py"
    app.write_text(textwrap.dedent(APP))
    running = Sandbox(["dev", str(app), "--port", "0", "--data-dir", str(root / "data")], cwd=root)
    running.data_dir = root / "data"
    try:
        running.wait_url()
        yield running
    finally:
        running.stop()


def read_state(sandbox: Sandbox) -> dict:
    return json.loads((sandbox.data_dir / "sandbox.json").read_text())


def raw_request(
    sandbox: Sandbox,
    method: str,
    path: str,
    *,
    token: str | None = "from-state",
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], dict]:
    """Send one request to the sandbox's management API; return status, headers and decoded body."""
    state = read_state(sandbox)
    port = int(state["admin_url"].rsplit(":", 1)[1])
    all_headers = dict(headers or {})
    if token == "from-state":
        token = state["token"]
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    content = None if body is None else json.dumps(body).encode()
    if content is not None:
        all_headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=content, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, json.loads(raw)
    finally:
        connection.close()


def live_ids(sandbox: Sandbox) -> set[str]:
    _, _, body = raw_request(sandbox, "GET", "/connections")
    return {row["connection_id"] for row in body["connections"]}


async def connect_and_identify(sandbox: Sandbox, path: str = "/"):
    """Open a client; return it and the connection id the management API lists for it."""
    before = live_ids(sandbox)
    websocket = await connect(sandbox.url + path)
    (connection_id,) = live_ids(sandbox) - before
    return websocket, connection_id


def send_raw_bytes(sandbox: Sandbox, data: bytes) -> bytes:
    state = read_state(sandbox)
    port = int(state["admin_url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def documented_status_fields() -> set[str]:
    """Return the field names of the running-sandbox table in docs/status.md."""
    text = (REPO / "docs" / "status.md").read_text()
    section = text.split("## When a sandbox runs", 1)[1].split("## When none runs", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


# The state file.


def test_state_file_mode_0600(sandbox: Sandbox) -> None:
    mode = stat.S_IMODE((sandbox.data_dir / "sandbox.json").stat().st_mode)
    assert mode == 0o600


def test_state_file_fields(sandbox: Sandbox) -> None:
    state = read_state(sandbox)
    assert state["pid"] == sandbox.process.pid
    assert state["url"] == sandbox.url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", state["admin_url"])
    assert len(state["token"]) >= 32
    assert state["data_dir"] == str(sandbox.data_dir.resolve())
    assert state["started_at"].endswith("+00:00")


# Who may call it.


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer"],
    ids=["missing", "wrong", "basic", "empty"],
)
def test_request_without_token_gets_401(sandbox: Sandbox, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, response_headers, body = raw_request(sandbox, "GET", "/status", token=None, headers=headers)
    assert status == 401
    assert response_headers["www-authenticate"].startswith("Bearer")
    assert "running" not in body


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1"])
def test_request_with_origin_gets_403(sandbox: Sandbox, origin: str) -> None:
    status, _, body = raw_request(sandbox, "GET", "/status", headers={"Origin": origin})
    assert status == 403
    assert "Origin" in body["error"]["message"]


def test_origin_checked_before_token(sandbox: Sandbox) -> None:
    status, _, _ = raw_request(sandbox, "GET", "/status", token=None, headers={"Origin": "http://evil.example"})
    assert status == 403


def test_foreign_host_header_gets_403(sandbox: Sandbox) -> None:
    # A page that rebinds its own name to 127.0.0.1 still sends its name as Host.
    status, _, body = raw_request(sandbox, "GET", "/status", headers={"Host": "evil.example:80"})
    assert status == 403
    assert "Host" in body["error"]["message"]


def test_localhost_host_header_accepted(sandbox: Sandbox) -> None:
    port = read_state(sandbox)["admin_url"].rsplit(":", 1)[1]
    status, _, _ = raw_request(sandbox, "GET", "/status", headers={"Host": f"localhost:{port}"})
    assert status == 200


# Routes.


def test_status_has_documented_fields(sandbox: Sandbox) -> None:
    status, headers, body = raw_request(sandbox, "GET", "/status")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert set(body) == documented_status_fields()
    assert body["running"] is True
    assert body["pid"] == sandbox.process.pid
    assert body["url"] == sandbox.url
    assert body["state"] == "active"
    assert body["environment"] == "sandbox"
    assert body["limits"] == {"burst": 10, "rate": 10}
    assert body["last_load"]["ok"] is True
    assert body["last_load"]["reason"] == "start"
    assert isinstance(body["data_items"], int)


async def test_connection_list_info_send_close(sandbox: Sandbox) -> None:
    websocket, connection_id = await connect_and_identify(sandbox, "/?name=ann")
    async with websocket:

        status, _, body = raw_request(sandbox, "GET", "/connections")
        assert status == 200
        listed = {row["connection_id"]: row for row in body["connections"]}
        assert connection_id in listed
        assert listed[connection_id]["query_string_parameters"] == {"name": "ann"}
        assert "headers" not in listed[connection_id]

        status, _, info = raw_request(sandbox, "GET", f"/connections/{connection_id}")
        assert status == 200
        assert info["connection_id"] == connection_id
        assert "host" in {name.lower() for name in info["headers"]}

        status, _, body = raw_request(sandbox, "POST", f"/connections/{connection_id}", body={"message": '{"a": 1}'})
        assert status == 200
        assert body == {"sent": connection_id, "bytes": 8}
        assert await asyncio.wait_for(websocket.recv(), 10) == '{"a": 1}'

        status, _, body = raw_request(sandbox, "DELETE", f"/connections/{connection_id}")
        assert status == 200
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(websocket.recv(), 10)
        assert websocket.close_code == 1000
    line = await sandbox.expect(rf"DISCONNECTED {re.escape(connection_id)} ")
    assert "management API" in line


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_connection_gets_404(sandbox: Sandbox, method: str) -> None:
    body = {"message": "hi"} if method == "POST" else None
    status, _, response = raw_request(sandbox, method, "/connections/bm8tc3VjaC1pZA%3D%3D", body=body)
    assert status == 404
    assert response["error"]["type"] == "InvalidConnectionError"
    assert response["error"]["message"] == "Connection bm8tc3VjaC1pZA== is not connected"


async def test_send_rejects_bad_bodies(sandbox: Sandbox) -> None:
    websocket, connection_id = await connect_and_identify(sandbox)
    async with websocket:
        path = f"/connections/{connection_id}"

        status, _, body = raw_request(sandbox, "POST", path, body={"message": "x" * (128 * 1024 + 1)})
        assert status == 413
        assert "131072" in body["error"]["message"]

        status, _, _ = raw_request(sandbox, "POST", path, body={"message": 42})
        assert status == 400
        status, _, _ = raw_request(sandbox, "POST", path, body=["not", "an", "object"])
        assert status == 400
        await websocket.close()


async def test_pause_rejects_handshakes_with_403(sandbox: Sandbox) -> None:
    status, _, body = raw_request(sandbox, "POST", "/pause", body={})
    try:
        assert status == 200
        assert body == {"state": "paused"}
        with pytest.raises(InvalidStatus) as caught:
            async with connect(sandbox.url):
                pass
        assert caught.value.response.status_code == 403
    finally:
        status, _, body = raw_request(sandbox, "POST", "/resume", body={})
    assert status == 200
    assert body == {"state": "active"}
    async with connect(sandbox.url) as websocket:
        await websocket.send("back")
        assert await asyncio.wait_for(websocket.recv(), 10) == "back"


def test_wrong_method_gets_405(sandbox: Sandbox) -> None:
    status, headers, _ = raw_request(sandbox, "GET", "/pause")
    assert status == 405
    assert headers["allow"] == "POST"


def test_unknown_path_gets_404(sandbox: Sandbox) -> None:
    status, _, _ = raw_request(sandbox, "GET", "/nothing/here")
    assert status == 404


def test_data_calls(sandbox: Sandbox, tmp_path: Path) -> None:
    status, _, body = raw_request(sandbox, "POST", "/data/set", body={"key": "admin:one", "value": {"a": 1}})
    assert status == 200
    assert body == {"result": {"a": 1}}
    status, _, body = raw_request(sandbox, "POST", "/data/get", body={"key": "admin:one"})
    assert body == {"result": {"a": 1}}

    status, _, body = raw_request(sandbox, "POST", "/data/set", body={"key": "ns:", "value": 1})
    assert status == 400
    assert body["error"]["type"] == "ValidationError"

    status, _, body = raw_request(sandbox, "POST", "/data/close", body={})
    assert status == 404

    exported = tmp_path / "export.json"
    status, _, body = raw_request(sandbox, "POST", "/data/export", body={"path": str(exported), "overwrite": False})
    assert status == 200
    assert {"key": "admin:one", "value": {"a": 1}} in json.loads(exported.read_text())

    status, _, body = raw_request(sandbox, "POST", "/data/export", body={"path": str(exported), "overwrite": False})
    assert status == 400
    assert body["error"]["type"] == "CommandError"

    status, _, body = raw_request(sandbox, "POST", "/data/import", body={"path": "relative.json"})
    assert status == 400

    source = tmp_path / "import.json"
    source.write_text('[{"key": "admin:two", "value": 2}]')
    status, _, body = raw_request(sandbox, "POST", "/data/import", body={"path": str(source)})
    assert status == 200
    assert body["imported"] == 1
    status, _, body = raw_request(sandbox, "POST", "/data/get", body={"key": "admin:two"})
    assert body == {"result": 2}


@pytest.mark.parametrize(
    ("request_bytes", "expected_status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET /status HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
        (b"POST /pause HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /pause HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999999\r\n\r\n", 413),
        (b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ],
    ids=["request-line", "version", "chunked", "huge-body", "huge-head"],
)
def test_malformed_request_rejected(sandbox: Sandbox, request_bytes: bytes, expected_status: int) -> None:
    response = send_raw_bytes(sandbox, request_bytes)
    assert response.startswith(f"HTTP/1.1 {expected_status} ".encode())


def test_deeply_nested_body_gets_400(sandbox: Sandbox) -> None:
    state = read_state(sandbox)
    body = b"[" * 100_000
    head = (
        f"POST /data/get HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {state['token']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    response = send_raw_bytes(sandbox, head + body)
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"nested too deeply" in response
    assert "Traceback" not in sandbox.output


@pytest.mark.parametrize(
    "length", ["-1", "1_0", "+5", "0x10", "\u0661"], ids=["negative", "underscore", "plus", "hex", "arabic-digit"]
)
def test_invalid_content_length_gets_400(sandbox: Sandbox, length: str) -> None:
    request = f"POST /pause HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n0123456789"
    response = send_raw_bytes(sandbox, request.encode("utf-8"))
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"invalid Content-Length" in response


def test_token_checked_before_body_read(sandbox: Sandbox) -> None:
    # The head announces a body that never comes; without a token, the
    # response must not wait for it.
    state = read_state(sandbox)
    port = int(state["admin_url"].rsplit(":", 1)[1])
    head = b"POST /pause HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 401 ")


def test_token_never_in_output(sandbox: Sandbox) -> None:
    token = read_state(sandbox)["token"]
    raw_request(sandbox, "GET", "/status")
    raw_request(sandbox, "GET", "/status", token=token[:-1] + "x")
    raw_request(sandbox, "GET", "/status", headers={"Origin": "http://evil.example"})
    raw_request(sandbox, "POST", "/connections/unknown", body={"message": "x"})
    assert "Rejected a management API request" in sandbox.output
    assert token not in sandbox.output


# In-process, with a fake gateway.


async def test_route_failure_gets_500() -> None:
    def broken_call(method: str, params: dict) -> None:
        raise RuntimeError("bug in a data call")

    gateway = SimpleNamespace(
        stopping=False, call=broken_call, url="ws://127.0.0.1:1",
        config=SimpleNamespace(app=Path("app.py"), data_dir=Path("/nonexistent")),
    )
    admin = AdminServer(gateway)
    await admin.start()
    try:
        client = AdminClient(admin.state())
        with pytest.raises(AdminError) as caught:
            await asyncio.to_thread(client.data, "get", {"key": "k"})
        assert caught.value.status == 500
        assert "bug in a data call" in caught.value.message
        # The server keeps serving after the failure.
        with pytest.raises(AdminError) as caught:
            await asyncio.to_thread(client.data, "close", {})
        assert caught.value.status == 404
    finally:
        await admin.close()


def test_client_rejects_remote_address() -> None:
    state = SandboxState(
        pid=1, url="ws://127.0.0.1:1", admin_url="http://192.0.2.1:8000", token="t",
        started_at="2024-01-01T00:00:00.000+00:00", app="app.py", data_dir="/tmp",
    )
    with pytest.raises(ValueError, match="not an http:// loopback address"):
        AdminClient(state)


class SlowStore:
    """A store whose export blocks its thread, as a large export does."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def export_entries(self) -> list:
        time.sleep(self.seconds)
        return [{"key": "k", "value": 1}]


async def test_export_runs_off_event_loop(tmp_path: Path) -> None:
    gateway = SimpleNamespace(
        stopping=False, store=SlowStore(0.6), url="ws://127.0.0.1:1",
        config=SimpleNamespace(app=Path("app.py"), data_dir=tmp_path),
    )
    admin = AdminServer(gateway)
    await admin.start()
    gaps: list[float] = []

    async def measure_gaps(stop: asyncio.Event) -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    stop = asyncio.Event()
    ticker = asyncio.create_task(measure_gaps(stop))
    try:
        client = AdminClient(admin.state())
        reply = await asyncio.to_thread(client.export_file, tmp_path / "out.json")
    finally:
        stop.set()
        await ticker
        await admin.close()
    assert reply["count"] == 1
    assert max(gaps) < 0.3


async def test_import_events_delivered_on_loop(tmp_path: Path) -> None:
    from ampt_sandbox.store import DataStore

    store = DataStore.open(tmp_path / "data")
    events: list[tuple[str, str, bool]] = []
    loop_thread = threading.get_ident()
    store.on_change = lambda event: events.append(
        (event["name"], event["key"], threading.get_ident() == loop_thread)
    )
    gateway = SimpleNamespace(
        stopping=False, store=store, url="ws://127.0.0.1:1", live_connection_ids=lambda: [],
        config=SimpleNamespace(app=Path("app.py"), data_dir=tmp_path),
    )
    source = tmp_path / "import.json"
    source.write_text(json.dumps([{"key": f"ns:{n:04d}", "value": n} for n in range(1200)]))
    admin = AdminServer(gateway)
    await admin.start()
    try:
        client = AdminClient(admin.state())
        reply = await asyncio.to_thread(client.import_file, source)
    finally:
        await admin.close()
        store.close()
    assert reply["imported"] == 1200
    assert [key for _, key, _ in events] == [f"ns:{n:04d}" for n in range(1200)]
    assert all(name == "created" for name, _, _ in events)
    assert all(on_loop for _, _, on_loop in events)
