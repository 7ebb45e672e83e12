"""``ampt-sandbox init``: write a runnable project from a starter template."""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from .main import app, fail

# The templates folder sits beside the package in a source checkout, and an
# editable install (pip install -e .) keeps it there.
# NOTE: a regular wheel install does not ship templates/, so init reports it missing.
TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"
DEFAULT_TEMPLATE = "echo"
APP_FILE = "app.py"
INDEX_PAGE = Path("public") / "index.html"
SEED_FILE = "data.json"
IGNORED_NAMES = {"__pycache__"}


class InitError(Exception):
    """The project cannot be written; the message is the one line to show."""


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    summary: str

    def files(self) -> list[Path]:
        """List the template's files, relative to its folder, sorted; caches and dotfiles are left out."""
        found = []
        for path in sorted(self.path.rglob("*")):
            relative = path.relative_to(self.path)
            if any(part in IGNORED_NAMES or part.startswith(".") for part in relative.parts):
                continue
            if path.suffix == ".pyc" or not path.is_file():
                continue
            found.append(relative)
        return found


def find_templates(root: Path | None = None) -> dict[str, Template]:
    """Return the templates under ``root`` (default: TEMPLATES_DIR) by name.

    A template is a folder that contains an ``app.py``.
    """
    root = TEMPLATES_DIR if root is None else root
    if not root.is_dir():
        raise InitError(
            f"templates folder not found at {root}; ampt-sandbox init needs a source checkout "
            "of ampt-sandbox or an editable install (pip install -e .)"
        )
    templates = {}
    for folder in sorted(root.iterdir()):
        app_file = folder / APP_FILE
        if folder.is_dir() and app_file.is_file():
            templates[folder.name] = Template(folder.name, folder, _summary(app_file))
    return templates


def _summary(app_file: Path) -> str:
    """Return the first line of the module docstring of ``app_file``, or an empty string."""
    try:
        docstring = ast.get_docstring(ast.parse(app_file.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return ""
    return docstring.strip().splitlines()[0] if docstring else ""


def write_project(template: Template, directory: Path, force: bool = False) -> list[Path]:
    """Copy the template's files into ``directory`` and return the paths written.

    Checks every target before writing any, so a rejected run leaves the
    folder as it was. Raises InitError when a file exists and ``force`` is
    false, or when a folder or file is in the way of the copy.
    """
    if directory.exists() and not directory.is_dir():
        raise InitError(f"{directory} exists and is not a folder; pass the path of a new or existing folder")

    files = template.files()
    existing = []
    for relative in files:
        target = directory / relative
        for parent in reversed(target.relative_to(directory).parents[:-1]):
            if (directory / parent).exists() and not (directory / parent).is_dir():
                raise InitError(f"{directory / parent} is a file, but the template needs a folder there; move it away")
        if target.is_dir():
            raise InitError(f"{target} is a folder, but the template writes a file there; move it away")
        if target.exists():
            existing.append(relative)
    if existing and not force:
        names = ", ".join(str(relative) for relative in existing)
        raise InitError(
            f"not overwriting existing files in {directory}: {names}; pass --force to overwrite them"
        )

    written = []
    for relative in files:
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template.path / relative, target)
        written.append(target)
    return written


def _next_steps(template: Template, directory: Path) -> list[str]:
    lines = []
    if directory.resolve() != Path.cwd().resolve():
        lines.append(f"  cd {directory}")
    lines.append(f"  ampt-sandbox dev {APP_FILE}")
    if (template.path / INDEX_PAGE).is_file():
        lines.append("  then open http://127.0.0.1:8765/ in a browser")
    else:
        lines.append("  then, in another terminal: ampt-sandbox connect ws://127.0.0.1:8765/")
    return lines


@app.command()
def init(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write the project into; created when missing.")
    ] = Path("."),
    template: Annotated[
        str, typer.Option("--template", "-t", help="Name of the starter template; see --list.")
    ] = DEFAULT_TEMPLATE,
    list_templates: Annotated[
        bool, typer.Option("--list", help="List the templates and exit.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files that already exist in the folder.")
    ] = False,
) -> None:
    """Write a runnable project (app.py, a README, and any page or seed data) from a template."""
    try:
        templates = find_templates()
    except InitError as exc:
        fail(str(exc))

    if list_templates:
        width = max((len(name) for name in templates), default=0)
        for name, found in templates.items():
            marker = " (default)" if name == DEFAULT_TEMPLATE else ""
            typer.echo(f"{name.ljust(width)}  {found.summary}{marker}")
        return

    chosen = templates.get(template)
    if chosen is None:
        names = ", ".join(templates) or "none found"
        fail(f"unknown template {template!r}; choose one of: {names} (ampt-sandbox init --list)")

    try:
        written = write_project(chosen, directory, force)
    except InitError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the project into {directory}: {exc.strerror or exc} ({exc.filename or directory})")

    typer.echo(f"Created a {chosen.name} project in {directory}:")
    for path in written:
        typer.echo(f"  {path}")
    if (chosen.path / SEED_FILE).is_file():
        typer.echo(f"{SEED_FILE} is seed data for the data store: load it with ampt-sandbox data import {SEED_FILE}")
    typer.echo("Next:")
    for line in _next_steps(chosen, directory):
        typer.echo(line)
