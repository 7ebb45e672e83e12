"""The exclusive lock that makes one process the owner of a data directory."""

from __future__ import annotations

import errno
import fcntl  # NOTE: POSIX only, so the data store does not open on Windows.
import os
from pathlib import Path

LOCK_FILE_NAME = "data.lock"


class StoreLockedError(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"The data store in {data_dir} is in use by {holder}; stop it, or pass "
            "another --data-dir"
        )
        self.data_dir = data_dir
        self.pid = pid


class DataDirLock:
    """An exclusive, non-blocking ``flock`` on ``<data_dir>/data.lock``.

    The lock file records the holder's process id so that a refused process
    can name it. The kernel releases the lock when the holder exits, even
    after SIGKILL, so a stale lock file never blocks a start.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Take the lock, or raise StoreLockedError without waiting."""
        path = data_dir / LOCK_FILE_NAME
        # The holder's process id is nobody else's business.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLockedError(data_dir, pid) from None
            raise

        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Closing the descriptor releases the flock.
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
