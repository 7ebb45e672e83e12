"""``ampt-sandbox data`` commands through Typer's CliRunner, and their core functions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ampt_sandbox.cli.data_commands import (
    CommandError,
    data_app,
    export_file,
    export_path,
    import_file,
)
from ampt_sandbox.errors import ValidationError
from ampt_sandbox.store import DataStore
from ampt_sandbox.store.transfer import parse_import


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(data_app, list(args))


def write_items(path: Path, items) -> None:
    path.write_text(json.dumps(items), encoding="utf-8")


def create_store(data_dir: Path) -> None:
    DataStore.open(data_dir).close()


def stored(data_dir: Path) -> list[dict]:
    with DataStore.open(data_dir) as store:
        return store.export_entries()


# import


def test_import_default_file(runner, workdir):
    write_items(workdir / "data.json", [{"key": "ns:a", "value": 1, "label1": "room:x"}, {"key": "b", "value": "x"}])
    result = invoke(runner, "import")
    assert result.exit_code == 0, result.output
    assert "Imported 2 items from data.json." in result.stdout
    assert stored(workdir / ".ampt") == [
        {"key": "b", "value": "x"},
        {"key": "ns:a", "value": 1, "label1": "room:x"},
    ]


def test_import_one_item_singular(runner, workdir):
    write_items(workdir / "one.json", [{"key": "a", "value": 1}])
    result = invoke(runner, "import", "one.json", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "Deleted 0 items before the import." in result.stdout
    assert "Imported 1 item from one.json." in result.stdout
    result = invoke(runner, "import", "one.json", "--overwrite")
    assert "Deleted 1 item before the import." in result.stdout


def test_import_creates_missing_data_dir(runner, workdir):
    write_items(workdir / "data.json", [{"key": "a", "value": 1}])
    result = invoke(runner, "import", "--data-dir", "new/dir")
    assert result.exit_code == 0, result.output
    assert stored(workdir / "new" / "dir") == [{"key": "a", "value": 1}]


def test_import_folder_is_rejected(runner, workdir):
    (workdir / "folder").mkdir()
    result = invoke(runner, "import", "folder")
    assert result.exit_code == 1
    assert result.stderr == '"folder" is a folder, not a file; give the path of a JSON file\n'
    with DataStore.open(workdir / "store") as store:
        with pytest.raises(CommandError, match="is a folder, not a file"):
            import_file(store, workdir / "folder")


def test_import_accepts_byte_order_mark(runner, workdir):
    (workdir / "data.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"key": "a", "value": "\u00e9"}]).encode())
    result = invoke(runner, "import")
    assert result.exit_code == 0, result.output
    assert stored(workdir / ".ampt") == [{"key": "a", "value": "\u00e9"}]


@pytest.mark.parametrize(
    "text",
    ["[]", " [ ] ", '[1, {"a": [2]}]\n', "[1,,2]", "[1 2]", "[1,]", "[", "[1", '{"a": 1}', "", "[1] x", "[1]]"],
)
def test_parse_import_matches_json_loads(text):
    try:
        expected = json.loads(text)
    except json.JSONDecodeError as exc:
        position = f"at line {exc.lineno} column {exc.colno} (character {exc.pos})"
        with pytest.raises(ValidationError) as raised:
            parse_import(text, "f")
        assert f"f is not valid JSON: {exc.msg} {position}" == str(raised.value)
        return
    if isinstance(expected, list):
        assert parse_import(text, "f") == expected
    else:
        with pytest.raises(ValidationError, match="must contain a JSON array"):
            parse_import(text, "f")


def test_import_missing_file(runner, workdir):
    result = invoke(runner, "import", "nothing.json")
    assert result.exit_code == 1
    assert result.stderr == 'File "nothing.json" not found.\n'


def test_import_keeps_other_keys(runner, workdir):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "kept", "value": 1})
        store.call("set", {"key": "ns:a", "value": {"old": True}})
    write_items(workdir / "data.json", [{"key": "ns:a", "value": {"new": True}}])
    assert invoke(runner, "import").exit_code == 0
    assert stored(workdir / ".ampt") == [
        {"key": "kept", "value": 1},
        {"key": "ns:a", "value": {"new": True}},
    ]


def test_import_overwrite_deletes_everything_first(runner, workdir):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "kept", "value": 1})
        store.call("set", {"key": "connection:abc", "value": {"room": "x"}})
        store.call("set", {"key": "connection:def", "value": {"room": "y"}})
    write_items(workdir / "data.json", [{"key": "ns:a", "value": 1}])
    result = invoke(runner, "import", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "Deleted 3 items before the import." in result.stdout
    assert "deleted 2 connection:* records" in result.stderr
    assert stored(workdir / ".ampt") == [{"key": "ns:a", "value": 1}]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[1, 2", "is not valid JSON: Expecting ',' delimiter at line 1 column 6 (character 5)"),
        ("", "is not valid JSON: Expecting value at line 1 column 1 (character 0)"),
        ('{"key": "a", "value": 1}', "must contain a JSON array of items, but it contains a dict"),
        ('[{"key": "a", "value": 1}, {"value": 1}]', 'Item 1: the item has no "key"'),
        ('[{"key": "a"}]', 'Item 0: the item has no "value"'),
        ('[{"key": "ns:", "value": 1}]', 'Item 0: Invalid key (key "ns:")'),
        ('[{"key": "a", "value": 1, "colour": 1}]', "Item 0: unknown fields colour"),
        ('[{"key": "a", "value": NaN}]', "Item 0: Invalid value at value: nan is not a JSON number"),
        ('[{"key": "a", "value": 1, "ttl": "soon"}]', "Item 0: Invalid ttl value."),
        ('[3]', "Item 0: an item must be an object, not a number"),
    ],
)
def test_import_invalid_file_changes_nothing(runner, workdir, content, expected):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "kept", "value": 1})
    (workdir / "data.json").write_text(content, encoding="utf-8")
    result = invoke(runner, "import", "--overwrite")
    assert result.exit_code == 1
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1
    assert stored(workdir / ".ampt") == [{"key": "kept", "value": 1}]


def test_import_oversized_item_names_index(runner, workdir):
    write_items(
        workdir / "data.json",
        [{"key": "small", "value": 1}, {"key": "big", "value": "x" * 410_000}],
    )
    result = invoke(runner, "import")
    assert result.exit_code == 1
    assert result.stderr.startswith("Item 1: Item size of 400.40 KB is greater than the maximum size of 400 KB.")
    assert stored(workdir / ".ampt") == []


def test_import_while_store_is_locked(runner, workdir):
    write_items(workdir / "data.json", [{"key": "a", "value": 1}])
    with DataStore.open(workdir / ".ampt"):
        result = invoke(runner, "import")
    assert result.exit_code == 1
    assert "in use by process" in result.stderr


def test_import_ttl_forms(tmp_path):
    (tmp_path / "items.json").write_text(
        json.dumps(
            [
                {"key": "relative", "value": 1, "ttl": 60},
                {"key": "absolute", "value": 1, "ttl": 4_000_000_000},
                {"key": "iso", "value": 1, "ttl": "2100-01-01T00:00:00Z"},
            ]
        )
    )
    with DataStore.open(tmp_path / "store", clock=lambda: 1_000_000.0) as store:
        import_file(store, tmp_path / "items.json")
        assert store.call("get", {"key": "relative", "meta": True})["ttl"] == 1_000_060_000
        assert store.call("get", {"key": "absolute", "meta": True})["ttl"] == 4_000_000_000_000
        assert store.call("get", {"key": "iso", "meta": True})["ttl"] == 4_102_444_800_000


# export


def test_export_format(runner, workdir):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "b", "value": {"é": [1, 2]}, "ttl": 4_000_000_000, "label2": "l:1"})
        store.call("set", {"key": "a", "value": 1})
    result = invoke(runner, "export")
    assert result.exit_code == 0, result.output
    assert "Exported 2 items to data.json." in result.stdout
    text = (workdir / "data.json").read_text(encoding="utf-8")
    expected = [
        {"key": "a", "value": 1},
        {"key": "b", "value": {"é": [1, 2]}, "label2": "l:1", "ttl": 4_000_000_000},
    ]
    assert text == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


def test_export_then_import_round_trip(runner, workdir):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "ns:a", "value": {"x": [1, None, 2.5]}, "label1": "room:a", "ttl": 3600})
        store.call("set", {"key": "n", "value": 7})
        before = store.call("get", {"key": "ns:a", "meta": True})
    assert invoke(runner, "export", "dump").exit_code == 0
    assert invoke(runner, "import", "dump.json", "--overwrite", "--data-dir", "other").exit_code == 0
    with DataStore.open(workdir / "other") as store:
        after = store.call("get", {"key": "ns:a", "meta": True})
        assert store.call("get", {"key": "n"}) == 7
    assert after["value"] == before["value"]
    assert after["ttl"] == before["ttl"]
    assert after["label1"] == "room:a"


def test_export_skips_expired_items(tmp_path):
    now = [1_000_000.0]
    with DataStore.open(tmp_path / "store", clock=lambda: now[0]) as store:
        store.call("set", {"key": "short", "value": 1, "ttl": 5})
        store.call("set", {"key": "long", "value": 1})
        now[0] += 10
        path, count = export_file(store, tmp_path / "out")
    assert path == tmp_path / "out.json"
    assert count == 1
    assert json.loads(path.read_text()) == [{"key": "long", "value": 1}]


def test_export_existing_file_needs_overwrite(runner, workdir):
    create_store(workdir / ".ampt")
    (workdir / "data.json").write_text("old\n")
    result = invoke(runner, "export")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert (workdir / "data.json").read_text() == "old\n"
    for flag in ("--overwrite", "-o", "--force"):
        result = invoke(runner, "export", flag)
        assert result.exit_code == 0, (flag, result.output)
    assert (workdir / "data.json").read_text() == "[]\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (".json", 'has no name before ".json"'),
        ("dir/.json", 'has no name before ".json"'),
        ("a.", 'ends with a dot; give "a.json"'),
        ("a..", 'ends with a dot; give "a.json"'),
        (".", "names no file"),
    ],
)
def test_export_path_rejects_bad_names(name, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        export_path(name)


def test_export_dot_json_name_rejected(runner, workdir):
    create_store(workdir / ".ampt")
    result = invoke(runner, "export", ".json")
    assert result.exit_code == 1
    assert 'has no name before ".json"' in result.stderr
    assert not (workdir / ".json.json").exists()


@pytest.mark.parametrize("command", [["get", "x"], ["remove", "x"], ["export"]])
def test_missing_data_dir_rejected(runner, workdir, command):
    result = invoke(runner, *command, "--data-dir", "typo/dir")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "no data store in typo/dir: the folder does not exist; check --data-dir\n"
    assert not (workdir / "typo").exists()
    assert not (workdir / "data.json").exists()


@pytest.mark.parametrize("command", [["get", "x"], ["remove", "x"], ["export"]])
def test_data_dir_without_store_rejected(runner, workdir, command):
    (workdir / "empty").mkdir()
    result = invoke(runner, *command, "--data-dir", "empty")
    assert result.exit_code == 1
    assert result.stderr.startswith("no data store in empty: the folder has no data.jsonl; check --data-dir")
    assert list((workdir / "empty").iterdir()) == []


def test_export_one_item_singular(runner, workdir):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "a", "value": 1})
    result = invoke(runner, "export")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Exported 1 item to data.json.\n"


@pytest.mark.parametrize(("name", "expected"), [("dump", "dump.json"), ("a/b.json", "a/b.json")])
def test_export_path_adds_extension(name, expected):
    assert export_path(name) == Path(expected)


@pytest.mark.parametrize("name", ["dump.txt", "dump.JSON", "data.json.bak"])
def test_export_path_rejects_other_extensions(name):
    with pytest.raises(CommandError, match=r'^Data file name must end with "\.json"$'):
        export_path(name)


def test_export_command_rejects_extension(runner, workdir):
    result = invoke(runner, "export", "dump.csv")
    assert result.exit_code == 1
    assert result.stderr == 'Data file name must end with ".json"\n'
    assert not (workdir / ".ampt").exists()


# get and remove


def test_get_prints_json(runner, workdir):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "ns:a", "value": {"x": 1}})
        store.call("set", {"key": "ns:b", "value": 2})
    result = invoke(runner, "get", "ns:a")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"x": 1}
    page = json.loads(invoke(runner, "get", "ns:*", "--limit", "1").stdout)
    assert page == {"items": [{"key": "ns:a", "value": {"x": 1}}], "last_key": "ns:a"}
    assert json.loads(invoke(runner, "get", "missing").stdout) is None


def test_get_meta_prints_iso_times(runner, workdir):
    with DataStore.open(workdir / ".ampt", clock=lambda: 0.5) as store:
        store.call("set", {"key": "a", "value": 1})
    item = json.loads(invoke(runner, "get", "a", "--meta").stdout)
    assert item["created"] == "1970-01-01T00:00:00.500+00:00"


def test_get_invalid_limit(runner, workdir):
    create_store(workdir / ".ampt")
    result = invoke(runner, "get", "ns:*", "--limit", "0")
    assert result.exit_code == 1
    assert result.stderr == "'limit' must be between 1 and 1000\n"


def test_remove_prints_true(runner, workdir):
    with DataStore.open(workdir / ".ampt") as store:
        store.call("set", {"key": "ns:a", "value": 1})
    result = invoke(runner, "remove", "ns:a")
    assert result.exit_code == 0
    assert result.stdout == "true\n"
    assert stored(workdir / ".ampt") == []


def test_remove_rejects_pattern(runner, workdir):
    create_store(workdir / ".ampt")
    result = invoke(runner, "remove", "ns:*")
    assert result.exit_code == 1
    assert result.stderr.startswith("You cannot delete items using conditionals.")


def test_corrupt_store_is_reported(runner, workdir):
    (workdir / ".ampt").mkdir()
    (workdir / ".ampt" / "data.jsonl").write_text("not a journal\n")
    result = invoke(runner, "get", "a")
    assert result.exit_code == 1
    assert "data.jsonl" in result.stderr
    assert (workdir / ".ampt" / "data.jsonl").read_text() == "not a journal\n"


def test_import_file_function_raises_validation_error(tmp_path):
    (tmp_path / "bad.json").write_text("{}")
    with DataStore.open(tmp_path / "store") as store:
        with pytest.raises(ValidationError, match="must contain a JSON array"):
            import_file(store, tmp_path / "bad.json")
