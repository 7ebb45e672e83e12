"""Settings of one gateway run, as the ``dev`` command collects them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..limits import Limits

MIB = 1024 * 1024


@dataclass
class GatewayConfig:
    app: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    env: str = "sandbox"
    limits: Limits = field(default_factory=lambda: Limits(burst=10, rate=10))
    reload: bool = True
    watch: list[Path] = field(default_factory=list)
    # A data file imported again whenever it changes (--reseed), or None.
    seed: Path | None = None
    # API Gateway WebSocket limits.
    max_message_size: int = 128 * 1024
    max_frame_size: int = 32 * 1024
    idle_timeout: float | None = 600.0
    max_connection_age: float | None = 7200.0
    handshake_timeout: float = 10.0
    # Keepalive pings that find clients gone without a close frame.
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    max_send_queue: int = 4 * MIB
    # Invocations in flight get this long to finish when the sandbox stops.
    shutdown_grace: float = 5.0
