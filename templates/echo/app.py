"""Echo: every message comes back to its sender unchanged."""

from ampt_sandbox import ws


@ws.on("message")
async def message(connection, message):
    await connection.send(message)
