"""Hot reload on real files and processes: connections stay open, new code serves."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from websockets.asyncio.client import connect

LOADED = r"Loaded app\.py in \d+ ms"

VERSIONED = """
from ampt_sandbox import ws
import helper

VERSION = "{version}"
calls = 0

@ws.on("message")
async def message(connection, message):
    global calls
    calls += 1
    await connection.send({{"version": VERSION, "helper": helper.NAME, "id": connection.connection_id,
                           "calls": calls, "message": message}})
"""


def write_app(sandbox, version: str, helper: str | None = None) -> None:
    if helper is not None:
        (sandbox.app_path.parent / "helper.py").write_text(f'NAME = "{helper}"\n')
    sandbox.app_path.write_text(VERSIONED.format(version=version))


async def ask(ws, message="q"):
    await ws.send(json.dumps(message))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


@pytest.fixture
def versioned(run_sandbox, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "helper.py").write_text('NAME = "h1"\n')
    sandbox = run_sandbox(VERSIONED.format(version="v1"), "--burst", "0", "--rate", "0")
    return sandbox


async def test_edit_serves_new_code_on_same_socket(versioned):
    async with connect(versioned.url) as ws:
        first = await ask(ws)
        assert first["version"] == "v1"
        assert (await ask(ws))["calls"] == 2

        write_app(versioned, "v2")
        await versioned.expect_count(LOADED, 2)
        second = await ask(ws)
        assert second["version"] == "v2"
        assert second["id"] == first["id"]
        # Module-level state starts over with the new runtime.
        assert second["calls"] == 1
    await versioned.expect(r"Reloading: app\.py")


async def test_helper_module_edit_reloads(versioned):
    async with connect(versioned.url) as ws:
        assert (await ask(ws))["helper"] == "h1"
        (versioned.app_path.parent / "helper.py").write_text('NAME = "h2"\n')
        await versioned.expect_count(LOADED, 2)
        assert (await ask(ws))["helper"] == "h2"


async def test_syntax_error_keeps_old_code_then_fix(versioned):
    async with connect(versioned.url) as ws:
        versioned.app_path.write_text("from ampt_sandbox import ws\n\ndef broken(:\n")
        await versioned.expect(r"Failed to load app\.py .*app\.py:3: SyntaxError")
        assert (await ask(ws))["version"] == "v1"
        write_app(versioned, "v3")
        await versioned.expect_count(LOADED, 2)
        assert (await ask(ws))["version"] == "v3"


async def test_exception_at_import_keeps_old_code(versioned):
    async with connect(versioned.url) as ws:
        versioned.app_path.write_text("from ampt_sandbox import ws\nws.on('opened')\n")
        await versioned.expect(r"Failed to load app\.py .*ValueError: Invalid event name: 'opened'")
        await versioned.expect(r'File ".*app\.py", line 2')
        assert (await ask(ws))["version"] == "v1"


async def test_many_saves_in_a_burst_reload_once(versioned):
    async with connect(versioned.url) as ws:
        for index in range(10):
            write_app(versioned, f"burst{index}")
        await versioned.expect_count(LOADED, 2)
        assert (await ask(ws))["version"] == "burst9"
    assert versioned.count(r"Reloading: ") == 1


async def test_same_size_saves_within_a_second(versioned):
    async with connect(versioned.url) as ws:
        write_app(versioned, "v8")
        await versioned.expect_count(LOADED, 2)
        assert (await ask(ws))["version"] == "v8"
        write_app(versioned, "v9")
        await versioned.expect_count(LOADED, 3)
        assert (await ask(ws))["version"] == "v9"


async def test_save_by_rename(versioned):
    async with connect(versioned.url) as ws:
        temporary = versioned.app_path.parent / ".app.py.swp-new"
        temporary.write_text(VERSIONED.format(version="renamed"))
        os.replace(temporary, versioned.app_path)
        await versioned.expect_count(LOADED, 2)
        assert (await ask(ws))["version"] == "renamed"


async def test_deleted_app_keeps_serving_until_back(versioned):
    async with connect(versioned.url) as ws:
        versioned.app_path.unlink()
        await versioned.expect(r"app\.py was deleted .*last loaded code keeps serving")
        assert (await ask(ws))["version"] == "v1"
        write_app(versioned, "back")
        await versioned.expect_count(LOADED, 2)
        assert (await ask(ws))["version"] == "back"


async def test_no_message_lost_during_reload(versioned):
    async with connect(versioned.url) as ws:
        total = 300
        versions = []

        async def receive_all():
            for _ in range(total):
                versions.append(json.loads(await asyncio.wait_for(ws.recv(), 20))["version"])

        receiver = asyncio.create_task(receive_all())
        for index in range(total):
            await ws.send(json.dumps(index))
            if index == 50:
                write_app(versioned, "v2")
            await asyncio.sleep(0.005)
        await receiver
        assert len(versions) == total
        assert versions[0] == "v1"
        assert versions[-1] == "v2"


async def test_cpu_loop_handler_replaced_runtime(run_sandbox):
    sandbox = run_sandbox(
        """
        from ampt_sandbox import ws

        @ws.on("message", timeout=0.5)
        async def message(connection, message):
            if message == "spin":
                while True:
                    pass
            await connection.send("alive")
        """
    )
    async with connect(sandbox.url) as spinner, connect(sandbox.url) as other:
        await spinner.send("spin")
        await sandbox.expect(r"its event loop is blocked, so it is being replaced")
        await sandbox.expect_count(LOADED, 2)
        await other.send("x")
        assert await asyncio.wait_for(other.recv(), 10) == "alive"
        await spinner.send("x")
        assert await asyncio.wait_for(spinner.recv(), 10) == "alive"


async def test_os_exit_in_handler_restarts_runtime(run_sandbox):
    sandbox = run_sandbox(
        """
        import os
        from ampt_sandbox import ws

        @ws.on("message")
        async def message(connection, message):
            if message == "die":
                os._exit(3)
            await connection.send("alive")
        """
    )
    async with connect(sandbox.url) as ws:
        await ws.send("die")
        await sandbox.expect(r"The message invocation for \S+ failed: runtime \d+ exited \(status 3\)")
        await sandbox.expect(r"Runtime \d+ exited with status 3; invocations lost: 1; restarting")
        await sandbox.expect_count(LOADED, 2)
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), 10) == "alive"


async def test_import_that_blocks_times_out_and_fix_loads(run_sandbox):
    sandbox = run_sandbox(
        """
        import time
        from ampt_sandbox import ws
        print("IMPORTING", flush=True)
        time.sleep(1000)
        """,
        wait=False,
    )
    await sandbox.expect(r"IMPORTING")
    # A fix saved while the first import hangs replaces that import.
    write_app(sandbox, "fixed", helper="h1")
    url = await sandbox.expect(r"^ws://", stream="stdout")
    async with connect(url) as ws:
        assert (await ask(ws))["version"] == "fixed"
    await sandbox.expect(r"Failed to load app\.py \(start\): stopped: a newer change")


async def test_import_that_blocks_fails_after_timeout(run_sandbox):
    sandbox = run_sandbox(
        """
        import time
        from ampt_sandbox import ws
        time.sleep(1000)
        """,
        wait=False,
    )
    await sandbox.expect(r"Failed to load app\.py \(start\): the import did not finish within 10 s", timeout=30)
    assert sandbox.stop() == 0


async def test_sigterm_during_hanging_first_import(run_sandbox):
    sandbox = run_sandbox(
        """
        import time
        from ampt_sandbox import ws
        time.sleep(1000)
        """,
        wait=False,
    )
    await sandbox.expect(r"Listening on ws://")
    assert sandbox.stop(timeout=15) == 0
