"""The state file through which other commands find a running ``dev``.

``dev`` writes ``sandbox.json`` into its data directory once it listens: its
process id, the WebSocket URL, the management API's URL and the bearer token
that API requires. The token makes the file a secret, so it is created with
mode 0600 and replaced atomically, and it is removed when ``dev`` exits
cleanly. A file left by a process that no longer runs (``kill -9``, a power
cut) is stale: commands report it, and the next ``dev`` replaces it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE_NAME = "sandbox.json"
FORMAT_VERSION = 1


class StateFileError(Exception):
    """The state file exists but cannot be read or parsed."""


@dataclass(frozen=True)
class SandboxState:
    """The contents of the state file."""

    pid: int
    url: str
    admin_url: str
    # Kept out of repr() so that a traceback or a debug print cannot show it.
    token: str = field(repr=False)
    started_at: str
    app: str
    data_dir: str
    version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, text: str) -> SandboxState:
        """Parse the file's text; raises StateFileError when a field is missing or invalid."""
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise StateFileError(f"it is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise StateFileError("it does not contain a JSON object")
        expected: dict[str, type] = {
            "pid": int, "url": str, "admin_url": str, "token": str, "started_at": str, "app": str, "data_dir": str,
        }
        for name, kind in expected.items():
            value = body.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise StateFileError(f"the field {name!r} is missing or not a {kind.__name__}")
        return cls(**{name: body[name] for name in expected}, version=body.get("version", FORMAT_VERSION))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE_NAME


def now_iso() -> str:
    """Return the current time as ISO 8601 in UTC with milliseconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def write_state(data_dir: Path, state: SandboxState) -> Path:
    """Write the state file atomically, readable and writable by its owner only.

    The temporary file is created with mode 0600, so the token is never
    readable by others, not even between creation and ``os.replace``.
    """
    path = state_path(data_dir)
    temporary = data_dir / f".{STATE_FILE_NAME}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # The umask can only remove bits from 0600; fchmod also restores the
        # owner's bits should a strange umask have removed them.
        if hasattr(os, "fchmod"):
            os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            descriptor = -1
            file.write(state.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if descriptor >= 0:
            os.close(descriptor)
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return path


def read_state(data_dir: Path) -> SandboxState | None:
    """Return the state file's contents, or None when there is no state file.

    Raises:
        StateFileError: the file cannot be read or is not a valid state file.
    """
    path = state_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return SandboxState.from_json(text)
    except StateFileError as exc:
        raise StateFileError(f"{path} is not a valid state file: {exc}") from None


def remove_state(data_dir: Path, pid: int | None = None) -> bool:
    """Remove the state file; with ``pid``, only if the file still names that process.

    Returns whether a file was removed.
    """
    path = state_path(data_dir)
    if pid is not None:
        try:
            current = read_state(data_dir)
        except StateFileError:
            current = None
        if current is None or current.pid != pid:
            return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def process_alive(pid: int) -> bool:
    """Return whether a process with this id exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists but belongs to another user.
        return True
    except OSError:
        return False
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A killed child stays a zombie until its parent waits for it; it holds no
    # port and no lock any more. Only Linux exposes the state cheaply.
    if not sys.platform.startswith("linux"):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name in brackets may contain spaces; the state follows it.
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def describe_state(state: SandboxState) -> dict[str, Any]:
    """Return the state without its token, for messages and ``--json`` output."""
    body = asdict(state)
    del body["token"]
    return body
