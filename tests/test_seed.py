"""dev --seed imports a data file at start; --reseed imports it again on change."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from websockets.asyncio.client import connect

READER = """
from ampt_sandbox import ws, data

@ws.on("message")
async def message(connection, message):
    await connection.send({"value": await data.get(message)})
"""


async def read_key(url: str, key: str):
    async with connect(url) as ws:
        await ws.send(json.dumps(key))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))["value"]


async def test_seed_at_start_keeps_other_keys(run_sandbox, tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps([{"key": "config:theme", "value": "dark"}]))
    sandbox = run_sandbox(READER, "--seed", str(seed))
    assert await read_key(sandbox.url, "config:theme") == "dark"
    await sandbox.expect(r"Seeded 1 item from")


async def test_reseed_imports_again_on_change(run_sandbox, tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps([{"key": "config:theme", "value": "dark"}]))
    sandbox = run_sandbox(READER, "--seed", str(seed), "--reseed")
    assert await read_key(sandbox.url, "config:theme") == "dark"
    seed.write_text(json.dumps([{"key": "config:theme", "value": "light"}, {"key": "extra", "value": 1}]))
    await sandbox.expect_count(r"Seeded \d+ items? from", 2)
    assert await read_key(sandbox.url, "config:theme") == "light"
    assert await read_key(sandbox.url, "extra") == 1


def test_invalid_seed_file_exits_1(tmp_path):
    (tmp_path / "app.py").write_text(READER)
    (tmp_path / "bad.json").write_text("[{")
    result = subprocess.run(
        [sys.executable, "-m", "ampt_sandbox", "dev", "app.py", "--port", "0", "--seed", "bad.json",
         "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "cannot seed the store from bad.json" in result.stderr


def test_missing_seed_file_exits_1(tmp_path):
    (tmp_path / "app.py").write_text(READER)
    result = subprocess.run(
        [sys.executable, "-m", "ampt_sandbox", "dev", "app.py", "--port", "0", "-s", "nope.json",
         "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert 'File "nope.json" not found.' in result.stderr
