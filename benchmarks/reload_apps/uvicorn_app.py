"""Probe app for the reload benchmark on uvicorn: the same replies as sandbox_app.py.

A raw ASGI app: every WebSocket message gets VERSION back as text, and plain
HTTP requests get 404. The benchmark copies this file to a temporary folder
and rewrites the VERSION line to simulate an edit.
"""

VERSION = "v0"


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"WebSocket only\n"})
        return
    if scope["type"] != "websocket":
        return

    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": VERSION})
