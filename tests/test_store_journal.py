"""The journal storage on real files: replay, torn lines, corruption, locking, crashes."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tinydb import Query

from ampt_sandbox.store import DataStore, JournalStorage, StoreLockedError, StoreOpenError
from ampt_sandbox.store.datastore import JOURNAL_FILE_NAME
from ampt_sandbox.store.journal import encode_batch, encode_operation

REPO = Path(__file__).resolve().parent.parent


def journal_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_new_journal_has_header_only(tmp_path):
    storage = JournalStorage(tmp_path / "j.jsonl")
    storage.close()
    assert journal_lines(tmp_path / "j.jsonl") == ['{"format":"ampt-sandbox-journal","version":1}']


def test_put_and_delete_append_one_line_each(tmp_path):
    path = tmp_path / "j.jsonl"
    storage = JournalStorage(path)
    storage.put("items", "a", {"value": 1})
    storage.put("items", "b", {"value": 2})
    storage.delete("items", "a")
    storage.close()
    assert journal_lines(path)[1:] == [
        '["put","items","a",{"value":1}]',
        '["put","items","b",{"value":2}]',
        '["del","items","a"]',
    ]
    reopened = JournalStorage(path)
    assert reopened.read() == {"items": {"b": {"value": 2}}}
    reopened.close()


def test_batch_is_one_line(tmp_path):
    path = tmp_path / "j.jsonl"
    storage = JournalStorage(path)
    storage.apply([["put", "t", "a", {}], ["put", "t", "b", {}]])
    storage.close()
    assert len(journal_lines(path)) == 2


def test_reads_do_not_touch_the_file(tmp_path):
    path = tmp_path / "j.jsonl"
    storage = JournalStorage(path)
    storage.put("items", "a", {"value": 1})
    path.write_text("garbage that a re-read would choke on\n")
    assert storage.read()["items"]["a"] == {"value": 1}
    storage.close()


def test_torn_last_line_is_cut(tmp_path, caplog):
    path = tmp_path / "j.jsonl"
    storage = JournalStorage(path)
    storage.put("items", "a", {"value": 1})
    storage.close()
    complete_size = path.stat().st_size
    with open(path, "ab") as file:
        file.write(b'["put","items","b",{"val')

    with caplog.at_level(logging.WARNING, logger="ampt_sandbox.store"):
        reopened = JournalStorage(path)
    assert reopened.read() == {"items": {"a": {"value": 1}}}
    assert path.stat().st_size == complete_size
    assert "incomplete line" in caplog.text
    reopened.put("items", "c", {"value": 3})
    reopened.close()

    again = JournalStorage(path)
    assert again.read() == {"items": {"a": {"value": 1}, "c": {"value": 3}}}
    again.close()


def test_corrupt_middle_line_is_refused_untouched(tmp_path):
    path = tmp_path / "j.jsonl"
    storage = JournalStorage(path)
    storage.put("items", "a", {"value": 1})
    storage.close()
    content = path.read_bytes() + b"not json\n" + b'["put","items","b",{"value":2}]\n'
    path.write_bytes(content)

    with pytest.raises(StoreOpenError) as raised:
        JournalStorage(path)
    assert str(path) in str(raised.value)
    assert "line 3" in str(raised.value)
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    "content",
    [
        b'{"_default": {"1": {"a": 1}}}',  # a stock TinyDB file, no newline
        b'{"_default": {}}\n',
        b"\x00\x01\x02",
        b'{"format":"ampt-sandbox-journal","version":1}',  # header without newline
    ],
)
def test_foreign_file_is_refused_untouched(tmp_path, content):
    path = tmp_path / "j.jsonl"
    path.write_bytes(content)
    with pytest.raises(StoreOpenError, match="header"):
        JournalStorage(path)
    assert path.read_bytes() == content


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    content = b'{"format":"ampt-sandbox-journal","version":99}\n'
    path.write_bytes(content)
    with pytest.raises(StoreOpenError, match="version 99"):
        JournalStorage(path)
    assert path.read_bytes() == content


def test_unreadable_file_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = tmp_path / "j.jsonl"
    JournalStorage(path).close()
    path.chmod(0)
    try:
        with pytest.raises(StoreOpenError, match=str(path)):
            JournalStorage(path)
    finally:
        path.chmod(0o644)


def test_empty_file_becomes_empty_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"")
    storage = JournalStorage(path)
    assert storage.read() == {}
    storage.close()
    assert len(journal_lines(path)) == 1


def test_compaction_keeps_live_documents(tmp_path):
    path = tmp_path / "j.jsonl"
    storage = JournalStorage(path, compact_garbage=50)
    for round_number in range(20):
        for name in "abc":
            storage.put("items", name, {"value": round_number})
    storage.delete("items", "c")
    assert len(journal_lines(path)) < 30
    storage.close()
    reopened = JournalStorage(path)
    assert reopened.read() == {"items": {"a": {"value": 19}, "b": {"value": 19}}}
    reopened.close()
    assert not (tmp_path / "j.jsonl.tmp").exists()


def test_tinydb_table_writes_go_through_compaction(tmp_path):
    from ampt_sandbox.store.datastore import StoreDatabase

    database = StoreDatabase(tmp_path / "j.jsonl", storage=JournalStorage)
    table = database.table("items")
    table.insert({"value": 1, "kind": "x"})
    assert table.search(Query().kind == "x")[0]["value"] == 1
    database.close()
    reopened = StoreDatabase(tmp_path / "j.jsonl", storage=JournalStorage)
    assert len(reopened.table("items")) == 1
    reopened.close()


def test_failed_append_leaves_memory_unchanged(tmp_path):
    storage = JournalStorage(tmp_path / "j.jsonl")
    os.close(storage._fd)
    storage._fd = os.open(os.devnull, os.O_RDONLY)  # writes fail with EBADF
    from ampt_sandbox.errors import DataError

    with pytest.raises(DataError, match="Could not write"):
        storage.put("items", "a", {"value": 1})
    assert storage.read() == {}
    os.close(storage._fd)
    storage._fd = None


# The data directory lock


def test_second_open_is_locked(tmp_path):
    first = DataStore.open(tmp_path)
    try:
        with pytest.raises(StoreLockedError) as raised:
            DataStore.open(tmp_path)
        assert raised.value.pid == os.getpid()
        assert str(os.getpid()) in str(raised.value)
    finally:
        first.close()
    DataStore.open(tmp_path).close()


def test_lock_held_by_other_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from ampt_sandbox.store import DataStore; "
            f"s = DataStore.open({str(tmp_path)!r}); print('ready', flush=True); time.sleep(60)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError) as raised:
            DataStore.open(tmp_path)
        assert raised.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the lock with the killed process.
    DataStore.open(tmp_path).close()


def test_open_refuses_corrupt_store_and_releases_lock(tmp_path):
    path = tmp_path / JOURNAL_FILE_NAME
    path.write_text("[1, 2, 3]\n")
    with pytest.raises(StoreOpenError):
        DataStore.open(tmp_path)
    assert path.read_text() == "[1, 2, 3]\n"
    with pytest.raises(StoreOpenError):
        DataStore.open(tmp_path)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"nope": 1}, 'no "value"'),
        ({"value": 1, "modified": 1}, 'no "created"'),
        ({"value": 1, "created": "x", "modified": 1}, '"created" must be an integer'),
        ({"value": 1, "created": 1, "modified": 1, "ttl": "soon"}, '"ttl" must be an integer'),
        ({"value": 1, "created": 1, "modified": 1, "label1": 5}, '"label1" must be a string'),
        ({"value": 1, "created": 1, "modified": 1, "extra": 5}, "unknown fields: extra"),
    ],
    ids=["no-value", "no-created", "created-text", "ttl-text", "label-number", "unknown-field"],
)
def test_open_refuses_invalid_item_document(tmp_path, document, problem):
    path = tmp_path / JOURNAL_FILE_NAME
    content = (
        '{"format":"ampt-sandbox-journal","version":1}\n'
        '["put","items","a",{"value":1,"created":1,"modified":1}]\n'
        + json.dumps(["put", "items", "k", document]) + "\n"
    ).encode()
    path.write_bytes(content)
    with pytest.raises(StoreOpenError) as raised:
        DataStore.open(tmp_path)
    message = str(raised.value)
    assert str(path) in message
    assert "line 3" in message
    assert problem in message
    assert path.read_bytes() == content


def test_store_files_are_private(tmp_path):
    store = DataStore.open(tmp_path)
    store.call("set", {"key": "k", "value": 1})
    store.storage.compact()
    store.close()
    for name in (JOURNAL_FILE_NAME, "data.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_batch_line_matches_single_encoding(tmp_path):
    operations = [["put", "items", "a", {"value": "é\n\u2028", "created": 1}], ["del", "items", "b"]]
    assert encode_batch(operations) == encode_operation(["batch", operations])


# Crash safety


WRITER = textwrap.dedent(
    """
    import sys
    from ampt_sandbox.store import DataStore

    store = DataStore.open(sys.argv[1])
    number = 0
    while True:
        store.call("set", {"key": f"tmp:{number}", "value": number})
        store.call("set", {"key": f"ns:{number}", "value": {"n": number, "pad": "x" * (number % 300)}})
        store.call("remove", {"key": f"tmp:{number}"})
        print(number, flush=True)
        number += 1
    """
)


def test_every_acknowledged_write_survives_sigkill(tmp_path):
    data_dir = tmp_path / "data"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while len(acknowledged) < 2000 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            acknowledged.append(int(line))
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    # Lines the writer printed before it died were acknowledged too.
    acknowledged += [int(line) for line in writer.stdout.read().split()]
    writer.stdout.close()
    assert len(acknowledged) > 100, "the writer acknowledged too few writes to test anything"

    store = DataStore.open(data_dir)
    try:
        for number in acknowledged:
            assert store.call("get", {"key": f"ns:{number}"}) == {
                "n": number,
                "pad": "x" * (number % 300),
            }
            assert store.call("get", {"key": f"tmp:{number}"}) is None
        # Only the loop pass in flight at the kill (tmp:n and ns:n at most)
        # may have written beyond the last acknowledged number.
        assert 0 <= store.count() - len(acknowledged) <= 2
    finally:
        store.close()


def test_sigkill_during_append_leaves_loadable_store(tmp_path):
    data_dir = tmp_path / "data"
    store = DataStore.open(data_dir)
    store.call("set", {"key": "kept", "value": 1})
    store.close()
    with open(data_dir / JOURNAL_FILE_NAME, "ab") as file:
        file.write(json.dumps(["put", "items", "torn", {"value": 2}]).encode()[:-5])

    reopened = DataStore.open(data_dir)
    try:
        assert reopened.call("get", {"key": "kept"}) == 1
        assert reopened.call("get", {"key": "torn"}) is None
        assert reopened.count() == 1
    finally:
        reopened.close()
