"""A TinyDB storage that appends each change to a journal file.

TinyDB's stock ``JSONStorage`` rewrites the whole file on every write and
is not atomic, so a crash in the middle of a write leaves broken JSON. This
storage keeps the tables in memory and writes one JSON line per change:

    {"format": "ampt-sandbox-journal", "version": 1}     the header, line 1
    ["put", table, doc_id, document]                      insert or replace
    ["del", table, doc_id]                                delete
    ["batch", [operation, ...]]                           several, atomically

Every change reaches the operating system with one ``write`` call before
the call that made it returns, so a process killed with SIGKILL loses
nothing that was acknowledged. ``flush`` also makes it durable against a
power loss, and so does the fsync that a write runs when the last fsync is
at least ``fsync_interval`` seconds old. At open the journal is replayed. A last line without
its newline is the trace of an append cut short by a crash, so it is cut off.
Compaction rewrites the live documents to a temporary file, fsyncs it and
renames it over the journal, so the file is whole at every instant.

Reads never touch the file: ``read`` returns the tables held in memory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from ..errors import DataError

logger = logging.getLogger("ampt_sandbox.store")

FORMAT = "ampt-sandbox-journal"
VERSION = 1

Tables = dict[str, dict[str, Any]]
# Checks a document of a "put" line at replay: (table, doc_id, document).
DocumentCheck = Callable[[str, str, dict[str, Any]], None]
# The journal and its lock may contain private data, so only the owner reads them.
FILE_MODE = 0o600


class StoreOpenError(Exception):
    """The store file cannot be read; the message names the file and the problem."""


def encode_operation(operation: Any) -> bytes:
    """Encode one journal line. JSON escapes newlines, so a line contains no raw newline."""
    return _encode_json(operation) + b"\n"


def encode_batch(operations: list[list[Any]]) -> bytes:
    """Encode ``["batch", operations]`` as one journal line, byte for byte as ``encode_operation`` would.

    Each operation is encoded by its own call, so a batch of hundreds of
    megabytes lets other threads take the GIL between operations.
    """
    pieces = [b'["batch",[']
    for position, operation in enumerate(operations):
        if position:
            pieces.append(b",")
        pieces.append(_encode_json(operation))
    pieces.append(b"]]\n")
    # One join, so a large batch is copied once.
    return b"".join(pieces)


def _encode_json(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


class JournalStorage(Storage):
    """TinyDB storage on an append-only journal file, replayed at open.

    Writes through ``put``, ``delete`` and ``apply`` append one line each.
    TinyDB's own ``Table`` methods write through ``write``, which receives
    the whole database and compacts it to the file. That is correct, but it
    costs as much as TinyDB's stock storage.

    Args:
        path: the journal file; it is created when missing.
        fsync_interval: a write fsyncs the journal when the last fsync is
            at least this many seconds old; 0 fsyncs every write. Without
            later writes, the last ones wait for ``flush`` or ``close``.
        compact_garbage: compact once the journal contains this many lines
            that no longer describe a live document, and at least as many
            as there are live documents.
        check_document: called at replay for the document of every ``put``
            line; it raises ValueError to reject the line, which makes the
            whole file unreadable.

    Raises:
        StoreOpenError: the file cannot be read or is not a journal; the
            file is left as it was.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync_interval: float = 1.0,
        compact_garbage: int = 10_000,
        check_document: DocumentCheck | None = None,
    ) -> None:
        self.path = Path(path)
        self._check_document = check_document
        self.fsync_interval = fsync_interval
        self.compact_garbage = compact_garbage
        self._tables: Tables = {}
        self._fd: int | None = None
        self._size = 0
        self._garbage = 0
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._failed: str | None = None
        self._compact_at = compact_garbage

        # A missing or empty file contains no data, so compaction writes the header.
        if self._replay() and not self._needs_compaction():
            self._open_for_append()
        else:
            self.compact()

    # TinyDB's Storage interface.

    def read(self) -> Tables:
        return self._tables

    def write(self, data: Tables) -> None:
        """Replace the whole database with ``data`` and compact the journal."""
        self._check_writable()
        self._tables = {name: dict(documents) for name, documents in data.items()}
        self.compact()

    def close(self) -> None:
        """Fsync and close the file. The storage cannot be used afterwards."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None

    # Appending changes.

    def put(self, table: str, doc_id: str, document: dict[str, Any]) -> None:
        """Insert or replace one document. The journal line is written first."""
        self.apply([["put", table, doc_id, document]])

    def delete(self, table: str, doc_id: str) -> None:
        """Delete one document, if it exists."""
        self.apply([["del", table, doc_id]])

    def apply(self, operations: list[list[Any]]) -> None:
        """Apply ``put``/``del`` operations as one journal line, so all or none survive a crash.

        Raises:
            DataError: the line could not be written; memory and file are
                unchanged.
        """
        if not operations:
            return
        self._check_writable()
        if len(operations) == 1:
            line = encode_operation(operations[0])
        else:
            line = encode_batch(operations)
        self._append(line)
        for operation in operations:
            self._apply_in_memory(operation)

        if self._needs_compaction():
            try:
                self.compact()
            except DataError as exc:
                # The change itself is written; a journal that stays long
                # is only slower to open. Retry after twice the garbage.
                logger.error("%s; retrying later", exc)
                self._compact_at = self._garbage * 2

    def flush(self) -> None:
        """Fsync the journal, making every acknowledged write durable."""
        if self._fd is not None and self._unsynced:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise DataError(f"Could not fsync the data store {self.path}: {exc}") from exc
            self._unsynced = False
            self._last_sync = time.monotonic()

    def compact(self) -> None:
        """Rewrite the journal with only the live documents, atomically.

        The new content goes to a temporary file that is fsynced and then
        renamed over the journal, so a crash leaves either file whole.
        """
        self._check_writable()
        temporary = self.path.with_name(self.path.name + ".tmp")
        lines = [encode_operation({"format": FORMAT, "version": VERSION})]
        for table, documents in self._tables.items():
            lines.extend(
                encode_operation(["put", table, doc_id, document])
                for doc_id, document in documents.items()
            )
        content = b"".join(lines)

        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                _write_all(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            _fsync_directory(self.path.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise DataError(f"Could not compact the data store {self.path}: {exc}") from exc

        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._size = len(content)
        self._garbage = 0
        self._compact_at = self.compact_garbage
        self._open_for_append()
        self._unsynced = False
        self._last_sync = time.monotonic()

    @property
    def size(self) -> int:
        """The journal's length in bytes."""
        return self._size

    # Internals.

    def _open_for_append(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise StoreOpenError(f"Cannot open the data store {self.path} for writing: {exc}")

    def _needs_compaction(self) -> bool:
        live = sum(len(documents) for documents in self._tables.values())
        return self._garbage >= self._compact_at and self._garbage >= live

    def _check_writable(self) -> None:
        if self._failed is not None:
            raise DataError(
                f"The data store {self.path} is read-only since a write failed "
                f"({self._failed}); restart to reopen it"
            )

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            raise DataError(f"The data store {self.path} is closed")
        try:
            _write_all(self._fd, line)
        except OSError as exc:
            # Cut off the part of the line that may have been written, or a
            # later line would follow half a line and the journal would be
            # corrupt in the middle.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError as truncate_error:
                self._failed = str(truncate_error)
            raise DataError(f"Could not write to the data store {self.path}: {exc}") from exc

        self._size += len(line)
        self._unsynced = True
        if time.monotonic() - self._last_sync >= self.fsync_interval:
            try:
                self.flush()
            except DataError as exc:
                # The line is in the operating system's cache, so the write
                # survives a crash of this process; only a power loss could
                # lose it. The next write or flush() retries.
                logger.error("%s", exc)

    def _apply_in_memory(self, operation: list[Any]) -> None:
        verb, table = operation[0], operation[1]
        documents = self._tables.setdefault(table, {})
        if verb == "put":
            if operation[2] in documents:
                self._garbage += 1
            documents[operation[2]] = operation[3]
        else:
            # The "del" line and the line it supersedes are both garbage.
            if documents.pop(operation[2], None) is not None:
                self._garbage += 2
            else:
                self._garbage += 1

    def _replay(self) -> bool:
        """Load the journal into memory; return False when there is no file or it is empty."""
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreOpenError(f"Cannot read the data store {self.path}: {exc}") from exc
        if not content:
            return False

        header_end = content.find(b"\n")
        if header_end < 0 or not self._is_header(content[:header_end]):
            raise StoreOpenError(
                f"Cannot read the data store {self.path}: the first line is not the header "
                f"of an ampt-sandbox journal, so the file was left as it is"
            )

        position = header_end + 1
        line_number = 1
        while position < len(content):
            line_number += 1
            end = content.find(b"\n", position)
            if end < 0:
                self._cut_torn_line(position, len(content) - position)
                break
            line = content[position:end]
            position = end + 1
            if not line.strip():
                continue
            try:
                self._replay_line(line)
            except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
                raise StoreOpenError(
                    f"Cannot read the data store {self.path}: line {line_number} is corrupt "
                    f"({exc}); the file was left as it is"
                ) from None
        else:
            self._size = len(content)
        return True

    def _is_header(self, line: bytes) -> bool:
        try:
            header = json.loads(line)
        except ValueError:
            return False
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            return False
        version = header.get("version")
        if version != VERSION:
            raise StoreOpenError(
                f"Cannot read the data store {self.path}: it has journal version {version!r} "
                f"and this ampt-sandbox reads version {VERSION}; upgrade ampt-sandbox"
            )
        return True

    def _replay_line(self, line: bytes) -> None:
        operation = json.loads(line)
        if not isinstance(operation, list) or not operation:
            raise ValueError("a line must be a JSON array")
        if operation[0] == "batch":
            operations = operation[1]
            if not isinstance(operations, list):
                raise ValueError("a batch must hold a list of operations")
        else:
            operations = [operation]
        for single in operations:
            _check_operation(single)
            if single[0] == "put" and self._check_document is not None:
                self._check_document(single[1], single[2], single[3])
        for single in operations:
            self._apply_in_memory(single)

    def _cut_torn_line(self, offset: int, length: int) -> None:
        # A line without its newline is an append that a crash interrupted:
        # its write never returned, so it was never acknowledged.
        logger.warning(
            "Data store %s ends with an incomplete line of %d bytes, left by a crash "
            "during a write; removing it",
            self.path,
            length,
        )
        try:
            with open(self.path, "r+b") as file:
                file.truncate(offset)
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise StoreOpenError(
                f"Cannot repair the data store {self.path}: removing its incomplete last "
                f"line failed: {exc}"
            ) from exc
        self._size = offset


def _check_operation(operation: Any) -> None:
    if not isinstance(operation, list) or len(operation) < 3:
        raise ValueError("an operation must be a JSON array of 3 or 4 elements")
    verb, table, doc_id = operation[0], operation[1], operation[2]
    if not isinstance(table, str) or not isinstance(doc_id, str):
        raise ValueError("table and document id must be strings")
    if verb == "put":
        if len(operation) != 4 or not isinstance(operation[3], dict):
            raise ValueError("a put operation must end with a JSON object")
    elif verb != "del" or len(operation) != 3:
        raise ValueError(f"unknown operation {verb!r}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    """Fsync a directory so that a rename inside it survives a power loss."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        # Some platforms cannot open a directory; the rename is still atomic.
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
