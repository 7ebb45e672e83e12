"""ampt-sandbox: run a WebSocket app written against the ``ws`` and ``data`` SDK locally.

User code imports its SDK from here::

    from ampt_sandbox import ws, data, SocketConnection

The command-line tool lives in ``ampt_sandbox.cli``; importing this package
loads neither the gateway nor any network library.
"""

from .errors import DataError, InvalidConnectionError, ValidationError, WebSocketError
from .runtime.bridge import bridge as _bridge
from .runtime.data import Data
from .runtime.ws import ConnectionMeta, SocketConnection, ws

__version__ = "0.1.0"

data = Data(_bridge.call_data)

__all__ = [
    "ConnectionMeta",
    "DataError",
    "InvalidConnectionError",
    "SocketConnection",
    "ValidationError",
    "WebSocketError",
    "data",
    "ws",
]
