"""Probe app for the reload benchmark: replies to every message with VERSION.

The benchmark copies this file to a temporary folder and rewrites the VERSION
line to simulate an edit.
"""

from ampt_sandbox import ws

VERSION = "v0"


@ws.on("message")
async def message(connection, message):
    await connection.send(VERSION)
