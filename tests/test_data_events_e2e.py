"""data.on change handlers run in the runtime for changes made by any handler."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect

APP = """
from ampt_sandbox import ws, data

@ws.on("message")
async def message(connection, message):
    if message == "create":
        await data.set("note:a", {"text": "hi"})
    elif message == "update":
        await data.set("note:a", {"text": "changed"})
    elif message == "delete":
        await data.remove("note:a")
    elif message == "simple":
        await data.set("counter", 1)
    await connection.send("done")

@data.on("created:note:*")
async def created(event):
    print("EVENT created", event["key"], event["item"]["value"], event["previous"])

@data.on("updated:note:*")
async def updated(event):
    print("EVENT updated", event["key"], event["item"]["value"], event["previous"]["value"])

@data.on("deleted:note:*")
async def deleted(event):
    print("EVENT deleted", event["key"], event["previous"]["value"])

@data.on("*")
async def every(event):
    print("EVENT any", event["name"], event["key"])

@data.on("created:note:*", timeout=0.2)
async def slow(event):
    import asyncio
    await asyncio.sleep(5)
"""


async def test_change_events_reach_every_matching_handler(run_sandbox):
    sandbox = run_sandbox(APP, "--burst", "0", "--rate", "0")
    async with connect(sandbox.url) as ws:
        for step in ("create", "update", "delete", "simple"):
            await ws.send(step)
            assert await asyncio.wait_for(ws.recv(), 10) == "done"
    await sandbox.expect(r"EVENT created note:a \{'text': 'hi'\} None")
    await sandbox.expect(r"EVENT updated note:a \{'text': 'changed'\} \{'text': 'hi'\}")
    await sandbox.expect(r"EVENT deleted note:a \{'text': 'changed'\}")
    await sandbox.expect(r"EVENT any created counter")
    await sandbox.expect(r"EVENT any deleted note:a")
    await sandbox.expect(r"data handler timed out .*0\.2 s")
    assert sandbox.count(r"EVENT created") == 1
