"""``ampt-sandbox init``: projects from templates, listing, and refusing to overwrite."""

from __future__ import annotations

import http.client
import signal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from ampt_sandbox.cli import init_cmd
from ampt_sandbox.cli.main import app
from conftest import Sandbox

REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

runner = CliRunner()


def run_init(*args: str):
    return runner.invoke(app, ["init", *args])


def test_list_shows_templates() -> None:
    result = run_init("--list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["chat", "echo", "location"]
    assert "(default)" in lines[1]
    assert "Chat rooms" in lines[0]


def test_default_template_is_echo(tmp_path: Path) -> None:
    target = tmp_path / "project"
    result = run_init(str(target))
    assert result.exit_code == 0, result.output
    assert (target / "app.py").read_text() == (REPO_TEMPLATES / "echo" / "app.py").read_text()
    assert (target / "README.md").is_file()
    assert f"cd {target}" in result.output
    assert "ampt-sandbox dev app.py" in result.output


def test_chat_copies_public_folder(tmp_path: Path) -> None:
    target = tmp_path / "mychat"
    result = run_init(str(target), "--template", "chat")
    assert result.exit_code == 0, result.output
    for relative in ("app.py", "README.md", "public/index.html", "public/chat.js", "public/style.css"):
        source = (REPO_TEMPLATES / "chat" / relative).read_bytes()
        assert (target / relative).read_bytes() == source, relative
    assert "http://127.0.0.1:8765/" in result.output


def test_current_folder_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_init("-t", "location")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "app.py").read_text() == (REPO_TEMPLATES / "location" / "app.py").read_text()
    assert "cd " not in result.output


def test_existing_files_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("# mine\n")
    result = run_init(str(tmp_path), "--template", "chat")
    assert result.exit_code == 1
    assert "app.py" in result.output
    assert "--force" in result.output
    assert (tmp_path / "app.py").read_text() == "# mine\n"
    # Nothing is written when any file is in the way.
    assert not (tmp_path / "README.md").exists()
    assert not (tmp_path / "public").exists()


def test_force_overwrites(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("# mine\n")
    (tmp_path / "notes.txt").write_text("keep me")
    result = run_init(str(tmp_path), "--force")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "app.py").read_text() == (REPO_TEMPLATES / "echo" / "app.py").read_text()
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_unknown_template(tmp_path: Path) -> None:
    result = run_init(str(tmp_path / "x"), "--template", "nope")
    assert result.exit_code == 1
    assert "unknown template 'nope'" in result.output
    assert "chat, echo, location" in result.output
    assert not (tmp_path / "x").exists()


def test_target_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    result = run_init(str(tmp_path / "taken"))
    assert result.exit_code == 1
    assert "is not a folder" in result.output


def test_file_where_folder_needed(tmp_path: Path) -> None:
    (tmp_path / "public").write_text("a file")
    result = run_init(str(tmp_path), "--template", "chat", "--force")
    assert result.exit_code == 1
    assert "needs a folder there" in result.output
    assert not (tmp_path / "app.py").exists()


@pytest.fixture
def custom_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A templates folder with a seeded template, caches and dotfiles to skip."""
    root = tmp_path / "templates"
    seeded = root / "seeded"
    (seeded / "__pycache__").mkdir(parents=True)
    (seeded / "app.py").write_text('"""Seeded: a template with data."""\n')
    (seeded / "data.json").write_text('[{"key": "greeting", "value": "hi"}]\n')
    (seeded / "README.md").write_text("# Seeded\n")
    (seeded / ".hidden").write_text("x")
    (seeded / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00")
    (root / "not-a-template").mkdir()
    monkeypatch.setattr(init_cmd, "TEMPLATES_DIR", root)
    return root


def test_seed_file_copied(custom_templates: Path, tmp_path: Path) -> None:
    target = tmp_path / "out"
    result = run_init(str(target), "--template", "seeded")
    assert result.exit_code == 0, result.output
    assert (target / "data.json").read_text() == '[{"key": "greeting", "value": "hi"}]\n'
    assert "data.json is seed data" in result.output
    assert not (target / ".hidden").exists()
    assert not (target / "__pycache__").exists()


def test_list_custom_templates(custom_templates: Path) -> None:
    result = run_init("--list")
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["seeded", "Seeded:", "a", "template", "with", "data."]


def test_missing_templates_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(init_cmd, "TEMPLATES_DIR", tmp_path / "gone")
    result = run_init("--list")
    assert result.exit_code == 1
    assert "templates folder not found" in result.output
    assert "pip install -e ." in result.output


def test_created_chat_project_runs(tmp_path: Path) -> None:
    result = run_init(str(tmp_path / "mychat"), "--template", "chat")
    assert result.exit_code == 0, result.output

    sandbox = Sandbox(
        ["dev", str(tmp_path / "mychat" / "app.py"), "--port", "0", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
    )
    try:
        url = sandbox.wait_url()
        connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=10)
        try:
            connection.request("GET", "/?name=ann")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200
        assert body == (REPO_TEMPLATES / "chat" / "public" / "index.html").read_bytes()
    finally:
        assert sandbox.stop(signal.SIGTERM) == 0
