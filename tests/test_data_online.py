"""The data commands against a running sandbox go through its management API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from websockets.asyncio.client import connect


def data_command(*args: str, data_dir, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ampt_sandbox", "data", *args, "--data-dir", str(data_dir)],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


async def test_data_commands_while_dev_runs(run_sandbox, tmp_path):
    data_dir = tmp_path / "data"
    sandbox = run_sandbox(template="location", data_dir=data_dir)
    async with connect(sandbox.url + "/?name=ann") as ws:
        await ws.send(json.dumps({"lat": 1, "long": 2}))
        await asyncio.wait_for(ws.recv(), 10)

        listed = await asyncio.to_thread(data_command, "get", "connection:*", data_dir=data_dir, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        items = json.loads(listed.stdout)["items"]
        assert len(items) == 1
        assert items[0]["value"]["name"] == "ann"

        seed = tmp_path / "seed.json"
        seed.write_text(json.dumps([{"key": "config:theme", "value": {"dark": True}}]))
        imported = await asyncio.to_thread(
            data_command, "import", str(seed), "--overwrite", data_dir=data_dir, cwd=tmp_path
        )
        assert imported.returncode == 0, imported.stderr
        assert "Imported 1 item from" in imported.stdout
        assert "deleted 1 connection:* record; 1 belonged to a live connection" in imported.stderr

        # The socket stays open after its record is gone.
        await ws.send(json.dumps({"lat": 3, "long": 4}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["name"] == "anonymous"

        exported = await asyncio.to_thread(data_command, "export", "out", data_dir=data_dir, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        saved = json.loads((tmp_path / "out.json").read_text())
        assert {"key": "config:theme", "value": {"dark": True}} in saved

        refused = await asyncio.to_thread(data_command, "export", "out", data_dir=data_dir, cwd=tmp_path)
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1

        removed = await asyncio.to_thread(data_command, "remove", "config:theme", data_dir=data_dir, cwd=tmp_path)
        assert removed.returncode == 0, removed.stderr
        assert json.loads(removed.stdout) is True

        invalid = await asyncio.to_thread(data_command, "get", "ns:a*b", data_dir=data_dir, cwd=tmp_path)
        assert invalid.returncode == 1
        assert "ns:a*b" in invalid.stderr

        missing = await asyncio.to_thread(data_command, "import", "nope.json", data_dir=data_dir, cwd=tmp_path)
        assert missing.returncode == 1
        assert missing.stderr.strip() == 'File "nope.json" not found.'
    assert sandbox.stop() == 0


def test_data_commands_without_dev_use_store(tmp_path):
    data_dir = tmp_path / "data"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps([{"key": "a", "value": 1}]))
    assert data_command("import", str(seed), data_dir=data_dir, cwd=tmp_path).returncode == 0
    got = data_command("get", "a", data_dir=data_dir, cwd=tmp_path)
    assert got.returncode == 0
    assert json.loads(got.stdout) == 1
