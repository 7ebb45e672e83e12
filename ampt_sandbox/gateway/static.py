"""Static files: plain HTTP GET requests to the sandbox port serve the app's ``public/`` folder.

The functions here only read files; the gateway turns the result into a
websockets ``Response``. Path rules, checked in this order:

- Only ``GET`` and ``HEAD`` are served; other methods get 405.
- The request target must be an absolute path (``/...``). Percent-encoded
  ``/``, ``\\`` and NUL, a literal ``\\``, invalid percent-encoding or UTF-8,
  and ``.`` or ``..`` segments get 400, so no spelling of a path can climb out
  of the folder.
- Segments that start with ``.`` (``.env``, ``.git/``) get 404: dotfiles are
  never served.
- The file's real path, with every symlink resolved, must lie inside the real
  path of the public folder; otherwise 404. Symlinks that stay inside work.
- ``/`` and any other folder serve the folder's ``index.html``.
- A folder requested without its trailing slash is redirected (301) to the
  slash form, so that relative links in its page resolve inside it.
"""

from __future__ import annotations

import email.utils
import http
import logging
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

logger = logging.getLogger("ampt_sandbox.static")

PUBLIC_FOLDER = "public"
INDEX_FILE = "index.html"
ALLOWED_METHODS = ("GET", "HEAD")

# Types of the files a page without a build step uses. Listed here because
# mimetypes reads the system's mime.types, which differs between machines
# (some map .js to application/x-javascript).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".pdf": "application/pdf",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Percent-encodings that would let a single path segment contain a separator
# or a NUL once decoded.
FORBIDDEN_ENCODINGS = ("%2f", "%5c", "%00")


@dataclass(frozen=True, slots=True)
class StaticResponse:
    """An HTTP response for a static file request, before websockets sends it."""

    status: http.HTTPStatus
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def is_websocket_upgrade(upgrade_values: list[str]) -> bool:
    """Return whether the ``Upgrade`` header values ask for the WebSocket protocol."""
    for value in upgrade_values:
        for protocol in value.split(","):
            if protocol.strip().lower() == "websocket":
                return True
    return False


def content_type_for(path: Path) -> str:
    """Return the ``Content-Type`` of a file, from its extension."""
    suffix = path.suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _encoding = mimetypes.guess_type(path.name, strict=False)
    if guessed is None:
        return DEFAULT_CONTENT_TYPE
    if guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed


def respond_static(public_dir: Path, request: Request) -> Response:
    """Serve a plain HTTP request from ``public_dir`` and log it; reads the file, so it blocks."""
    # Older websockets releases reject other methods before this hook runs,
    # and their Request has no ``method`` attribute.
    method = getattr(request, "method", "GET")
    result = serve_static(public_dir, request.path, method)
    logger.info("%s %s %d (%d bytes)", method, request.path, result.status, len(result.body))
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            *result.headers,
        ]
    )
    return Response(result.status.value, result.status.phrase, headers, result.body)


def serve_static(public_dir: Path, target: str, method: str = "GET") -> StaticResponse:
    """Build the response to an HTTP request for ``target`` in ``public_dir``.

    ``target`` is the request target as it arrived (``/chat.js?v=2``), still
    percent-encoded. Bad requests and missing files become 4xx responses,
    and a file system error while looking up or reading the file becomes 500.
    A ``HEAD`` response has the headers of the ``GET`` response and no body.
    """
    try:
        response = _serve(public_dir, target, method)
    except OSError as exc:
        logger.error("Cannot serve %s from %s: %s", target, public_dir, exc)
        response = _text(http.HTTPStatus.INTERNAL_SERVER_ERROR, f"Internal Server Error: reading {target} failed")
    if method == "HEAD":
        return StaticResponse(response.status, response.headers, b"")
    return response


def _serve(public_dir: Path, target: str, method: str) -> StaticResponse:
    if method not in ALLOWED_METHODS:
        response = _text(
            http.HTTPStatus.METHOD_NOT_ALLOWED,
            f"Method Not Allowed: {method} is not served here; static files answer GET and HEAD, "
            "and WebSocket clients must send an Upgrade: websocket header",
        )
        response.headers.append(("Allow", ", ".join(ALLOWED_METHODS)))
        return response

    parsed = _parse_target(target)
    if isinstance(parsed, StaticResponse):
        return parsed
    segments, trailing_slash, query = parsed

    try:
        root = public_dir.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        root = None
    if root is None or not root.is_dir():
        return _text(
            http.HTTPStatus.NOT_FOUND,
            f"Not Found: this app has no {PUBLIC_FOLDER}/ folder ({public_dir}); create it next to the "
            "app file to serve static files, or connect with a WebSocket client",
        )

    if any(segment.startswith(".") for segment in segments):
        return _not_found(target)

    candidate = root.joinpath(*segments)
    resolved = _resolve_inside(candidate, root)
    if resolved is None:
        logger.warning("Not serving %s: its real path is outside %s", target, root)
        return _not_found(target)

    if resolved.is_dir():
        if segments and not trailing_slash:
            location = "/" + "/".join(_quote_segments(segments)) + "/"
            if query:
                location += "?" + query
            response = _text(http.HTTPStatus.MOVED_PERMANENTLY, f"Moved Permanently: see {location}")
            response.headers.append(("Location", location))
            return response
        resolved = _resolve_inside(resolved / INDEX_FILE, root)
        if resolved is None:
            logger.warning("Not serving the index of %s: its real path is outside %s", target, root)
            return _not_found(target)

    return _read_file(resolved, target)


def _parse_target(target: str) -> tuple[list[str], bool, str] | StaticResponse:
    """Split a request target into decoded path segments, or return the 400 response."""
    if not target.startswith("/"):
        return _bad_request(target, "the request target must be a path that starts with /")
    parts = urlsplit(target)
    raw_path = parts.path
    lowered = raw_path.lower()
    for encoding in FORBIDDEN_ENCODINGS:
        if encoding in lowered:
            return _bad_request(target, f"the path contains the encoded character {encoding.upper()}")
    try:
        decoded = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        return _bad_request(target, "the percent-encoded path is not valid UTF-8")
    if "\\" in decoded or "\x00" in decoded:
        return _bad_request(target, "the path contains a backslash or a NUL character")

    segments = []
    for segment in decoded.split("/"):
        if segment in (".", ".."):
            return _bad_request(target, f"the path contains a '{segment}' segment")
        if segment:
            segments.append(segment)
    return segments, decoded.endswith("/"), parts.query


def _resolve_inside(path: Path, root: Path) -> Path | None:
    """Return the real path of ``path`` when it lies inside ``root``, else None."""
    try:
        resolved = path.resolve(strict=False)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on Python < 3.13
        return None
    if resolved == root or resolved.is_relative_to(root):
        return resolved
    return None


def _read_file(path: Path, target: str) -> StaticResponse:
    if not path.is_file():
        return _not_found(target)
    try:
        body = path.read_bytes()
        modified = path.stat().st_mtime
    except PermissionError:
        logger.warning("Cannot serve %s: permission denied on %s", target, path)
        return _text(http.HTTPStatus.FORBIDDEN, f"Forbidden: {target} is not readable")
    except OSError as exc:
        logger.error("Cannot serve %s: reading %s failed: %s", target, path, exc)
        return _text(http.HTTPStatus.INTERNAL_SERVER_ERROR, f"Internal Server Error: reading {target} failed")

    headers = [
        ("Content-Type", content_type_for(path)),
        ("Content-Length", str(len(body))),
        ("Last-Modified", email.utils.formatdate(modified, usegmt=True)),
        # A development server: the browser revalidates, so a saved edit shows on reload.
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    return StaticResponse(http.HTTPStatus.OK, headers, body)


def _quote_segments(segments: list[str]) -> list[str]:
    return [quote(segment, safe="") for segment in segments]


def _not_found(target: str) -> StaticResponse:
    path = urlsplit(target).path
    return _text(http.HTTPStatus.NOT_FOUND, f"Not Found: {path}")


def _bad_request(target: str, reason: str) -> StaticResponse:
    logger.warning("Rejected the static file request %s: %s", target, reason)
    return _text(http.HTTPStatus.BAD_REQUEST, f"Bad Request: {reason}")


def _text(status: http.HTTPStatus, text: str) -> StaticResponse:
    body = (text + "\n").encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"),
    ]
    return StaticResponse(status, headers, body)
