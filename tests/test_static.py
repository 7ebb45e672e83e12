"""Static files from the app's public/ folder: path rules, then through a real sandbox."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect

from ampt_sandbox.gateway.static import (
    CONTENT_TYPES,
    content_type_for,
    is_websocket_upgrade,
    serve_static,
)

INDEX = b"<!doctype html><title>home</title>"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An app folder with public/ files, a secret beside it, and symlinks in and out."""
    app = tmp_path / "app"
    public = app / "public"
    (public / "js").mkdir(parents=True)
    (public / "docs").mkdir()
    (public / "index.html").write_bytes(INDEX)
    (public / "js" / "chat.js").write_text("console.log('hi');\n")
    (public / "style.css").write_text("body {}\n")
    (public / "data.json").write_text("{}\n")
    (public / "logo.svg").write_text("<svg/>")
    (public / "blob.unknownext").write_bytes(b"\x00\x01")
    (public / "docs" / "index.html").write_text("<p>docs</p>")
    (public / "a file.txt").write_text("spaced")
    (public / "caf\u00e9.txt").write_text("accent")
    (public / ".env").write_text("SECRET=1")
    (app / "secret.txt").write_text("outside the public folder")
    (app / "app.py").write_text("# app\n")
    os.symlink(app / "secret.txt", public / "link-out.txt")
    os.symlink(app, public / "dir-out")
    os.symlink(public / "style.css", public / "link-in.css")
    return public


def header(response, name: str) -> str | None:
    for key, value in response.headers:
        if key.lower() == name.lower():
            return value
    return None


# Pure path rules.


def test_root_serves_index(site: Path) -> None:
    response = serve_static(site, "/")
    assert response.status == 200
    assert response.body == INDEX
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    assert header(response, "Content-Length") == str(len(INDEX))


def test_query_string_ignored(site: Path) -> None:
    response = serve_static(site, "/index.html?name=ann&room=lobby")
    assert response.status == 200
    assert response.body == INDEX


@pytest.mark.parametrize(
    ("target", "content_type"),
    [
        ("/js/chat.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/data.json", "application/json"),
        ("/logo.svg", "image/svg+xml"),
        ("/blob.unknownext", "application/octet-stream"),
    ],
)
def test_content_types(site: Path, target: str, content_type: str) -> None:
    response = serve_static(site, target)
    assert response.status == 200
    assert header(response, "Content-Type") == content_type


def test_content_type_table_for_common_suffixes() -> None:
    assert content_type_for(Path("x.HTML")) == CONTENT_TYPES[".html"]
    assert content_type_for(Path("x.wasm")) == "application/wasm"
    assert content_type_for(Path("x.png")) == "image/png"


def test_folder_serves_its_index(site: Path) -> None:
    response = serve_static(site, "/docs/")
    assert response.status == 200
    assert response.body == b"<p>docs</p>"


def test_folder_without_slash_redirects(site: Path) -> None:
    response = serve_static(site, "/docs?x=1")
    assert response.status == 301
    assert header(response, "Location") == "/docs/?x=1"


def test_folder_without_index_is_404(site: Path) -> None:
    response = serve_static(site, "/js/")
    assert response.status == 404


def test_percent_encoded_names(site: Path) -> None:
    assert serve_static(site, "/a%20file.txt").body == b"spaced"
    assert serve_static(site, "/caf%C3%A9.txt").body == "accent".encode()


def test_missing_file_is_404(site: Path) -> None:
    response = serve_static(site, "/nope.html")
    assert response.status == 404
    assert b"/nope.html" in response.body


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/etc/passwd",
        "/..%2fsecret.txt",
        "/js%2F..%2F..%2Fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/index.html%00.txt",
        "/%ff.txt",
        "/./index.html",
        "secret.txt",
        "http://127.0.0.1/secret.txt",
    ],
)
def test_escaping_paths_rejected(site: Path, target: str) -> None:
    response = serve_static(site, target)
    assert response.status == 400
    assert b"outside the public folder" not in response.body


@pytest.mark.parametrize("target", ["/link-out.txt", "/dir-out/secret.txt", "/dir-out/app.py", "/dir-out/"])
def test_symlinks_out_are_404(site: Path, target: str) -> None:
    response = serve_static(site, target)
    assert response.status == 404
    assert b"outside the public folder" not in response.body


def test_symlink_inside_is_served(site: Path) -> None:
    response = serve_static(site, "/link-in.css")
    assert response.status == 200
    assert response.body == b"body {}\n"


def test_index_symlinked_out_is_404(tmp_path: Path) -> None:
    public = tmp_path / "public"
    public.mkdir()
    (tmp_path / "elsewhere.html").write_text("private")
    os.symlink(tmp_path / "elsewhere.html", public / "index.html")
    response = serve_static(public, "/")
    assert response.status == 404


def test_dotfiles_are_404(site: Path) -> None:
    assert serve_static(site, "/.env").status == 404
    assert serve_static(site, "/%2eenv").status == 404


def test_no_public_folder_is_404(tmp_path: Path) -> None:
    response = serve_static(tmp_path / "public", "/")
    assert response.status == 404
    assert b"no public/ folder" in response.body


def test_public_that_is_a_file_is_404(tmp_path: Path) -> None:
    (tmp_path / "public").write_text("not a folder")
    response = serve_static(tmp_path / "public", "/")
    assert response.status == 404


def test_head_has_headers_no_body(site: Path) -> None:
    response = serve_static(site, "/", "HEAD")
    assert response.status == 200
    assert response.body == b""
    assert header(response, "Content-Length") == str(len(INDEX))


def test_other_methods_are_405(site: Path) -> None:
    response = serve_static(site, "/", "POST")
    assert response.status == 405
    assert header(response, "Allow") == "GET, HEAD"


def test_unreadable_file_is_403(site: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    locked = site / "locked.txt"
    locked.write_text("x")
    locked.chmod(0)
    assert serve_static(site, "/locked.txt").status == 403


def test_upgrade_header_detection() -> None:
    assert is_websocket_upgrade(["websocket"])
    assert is_websocket_upgrade(["WebSocket"])
    assert is_websocket_upgrade(["h2c, websocket"])
    assert not is_websocket_upgrade([])
    assert not is_websocket_upgrade(["h2c"])


# Through a real sandbox: HTTP and WebSocket on one port.

ECHO_APP = """
from ampt_sandbox import ws

@ws.on("message")
async def message(connection, message):
    await connection.send({"echo": message})
"""


def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a raw HTTP request, read until the server closes, return status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def port_of(sandbox) -> int:
    return urlsplit(sandbox.url).port


def test_sandbox_serves_index_and_websocket(run_sandbox, tmp_path: Path) -> None:
    public = tmp_path / "app" / "public"
    public.mkdir(parents=True)
    (public / "index.html").write_bytes(INDEX)
    (public / "chat.js").write_text("let x = 1;\n")
    sandbox = run_sandbox(ECHO_APP)
    port = port_of(sandbox)

    status, headers, body = http_get(port, "/")
    assert status == 200
    assert body == INDEX
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["server"] == "ampt-sandbox"

    status, headers, body = http_get(port, "/chat.js")
    assert status == 200
    assert headers["content-type"] == "text/javascript; charset=utf-8"

    async def round_trip() -> object:
        async with connect(sandbox.url + "/?name=ann") as websocket:
            await websocket.send('{"a": 1}')
            return json.loads(await asyncio.wait_for(websocket.recv(), 10))

    assert asyncio.run(round_trip()) == {"echo": {"a": 1}}
    sandbox.wait_for(r"GET /chat\.js 200")


def test_sandbox_without_public_is_404(run_sandbox) -> None:
    sandbox = run_sandbox(ECHO_APP)
    status, _headers, body = http_get(port_of(sandbox), "/")
    assert status == 404
    assert b"no public/ folder" in body


def test_sandbox_rejects_escapes(run_sandbox, tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    public = app_dir / "public"
    public.mkdir(parents=True)
    (public / "index.html").write_bytes(INDEX)
    os.symlink(app_dir / "app.py", public / "source.py")
    sandbox = run_sandbox(ECHO_APP)
    port = port_of(sandbox)

    # Raw requests: http.client and browsers would normalise these paths.
    for target in (b"/../app.py", b"/%2e%2e/app.py", b"/..%2fapp.py", b"/public/..%2F..%2Fapp.py"):
        status, _headers, body = raw_request(port, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status == 400, target
        assert b"ws.on" not in body
    status, _headers, body = raw_request(port, b"GET /source.py HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 404
    assert b"ws.on" not in body


def test_sandbox_head_request(run_sandbox, tmp_path: Path) -> None:
    public = tmp_path / "app" / "public"
    public.mkdir(parents=True)
    (public / "index.html").write_bytes(INDEX)
    sandbox = run_sandbox(ECHO_APP)
    status, headers, body = raw_request(port_of(sandbox), b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    if status == 405 and "allow" in headers and headers["allow"] == "GET":
        pytest.skip("this websockets release rejects HEAD before the sandbox sees it")
    assert status == 200
    assert headers["content-length"] == str(len(INDEX))
    assert body == b""


def test_sandbox_serves_while_inactive(run_sandbox, tmp_path: Path) -> None:
    public = tmp_path / "app" / "public"
    public.mkdir(parents=True)
    (public / "index.html").write_bytes(INDEX)
    sandbox = run_sandbox("raise RuntimeError('broken on purpose')\n", wait=False)
    sandbox.wait_for(r"broken on purpose")
    line = sandbox.wait_for(r"Listening on ws://")
    port = int(line.rsplit(":", 1)[1])
    status, _headers, body = http_get(port, "/")
    assert status == 200
    assert body == INDEX
