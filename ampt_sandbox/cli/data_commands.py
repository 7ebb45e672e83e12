"""``ampt-sandbox data``: import, export, get and remove on the data store.

Each command's work is a plain function on a ``DataStore`` (``import_file``,
``export_file``, ``get_items``, ``remove_items``), so that the gateway's
management API can run the same code on the store it owns. While a ``dev``
process runs on ``--data-dir``, the Typer commands send their work through
its management API, so the store keeps one writer. Otherwise they open the
store themselves and hold its lock, so no ``dev`` can start meanwhile.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar

import typer

from ..errors import DataError
from ..store import DataStore, StoreLockedError, StoreOpenError
from ..store.datastore import JOURNAL_FILE_NAME
from ..store.params import get_params
from ..store.transfer import ImportResult, parse_import

if TYPE_CHECKING:
    from ..gateway.admin import AdminClient

DEFAULT_DATA_FILE = "data.json"
T = TypeVar("T")

data_app = typer.Typer(
    name="data",
    help="Import, export, read and remove items of the sandbox's data store.",
    no_args_is_help=True,
)


class CommandError(Exception):
    """A data command rejected its input; the message is one line saying why."""


# The commands' work, callable with any open store.


def import_file(
    store: DataStore, path: Path, *, overwrite: bool = False, defer_events: bool = False
) -> ImportResult:
    """Import the items of a JSON file, each as an overwrite of its key.

    The whole file is checked before anything is written. With
    ``overwrite``, every item of the store is deleted first.
    ``defer_events`` is passed on to ``DataStore.import_entries``.

    Raises:
        CommandError: the file is missing or unreadable.
        ValidationError: the file is not a valid array of items (the store
            is unchanged).
    """
    try:
        # utf-8-sig drops the byte order mark that some Windows editors write.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CommandError(f'File "{path}" not found.') from None
    except IsADirectoryError:
        raise CommandError(folder_message(path)) from None
    except UnicodeDecodeError as exc:
        raise CommandError(f'File "{path}" is not UTF-8 text: {exc.reason} at byte {exc.start}') from None
    except OSError as exc:
        raise CommandError(f'File "{path}" cannot be read: {exc.strerror or exc}') from None
    entries = parse_import(text, f'File "{path}"')
    return store.import_entries(entries, overwrite=overwrite, defer_events=defer_events)


def folder_message(path: Path) -> str:
    return f'"{path}" is a folder, not a file; give the path of a JSON file'


def export_path(name: str | os.PathLike[str]) -> Path:
    """Return the export file's path: ``.json`` is added to a name without extension.

    Raises:
        CommandError: the name has another extension, is only ``.json``,
            ends with a dot or names no file.
    """
    path = Path(name)
    if path.name in ("", ".", ".."):
        raise CommandError(f'Data file name "{name}" names no file; give a name such as data.json')
    if path.name == ".json":
        raise CommandError('Data file name ".json" has no name before ".json"; give a name such as data.json')
    if path.name.endswith("."):
        raise CommandError(
            f'Data file name "{path.name}" ends with a dot; give "{path.name.rstrip(".")}.json" or a name '
            "without extension"
        )
    if path.suffix == "":
        return path.with_name(path.name + ".json")
    if path.suffix != ".json":
        raise CommandError('Data file name must end with ".json"')
    return path


def export_file(store: DataStore, name: str | os.PathLike[str], *, overwrite: bool = False) -> tuple[Path, int]:
    """Write every live item to a JSON file; return its path and the number of items.

    The file is indented by two spaces and ends with a newline. It is
    written to a temporary file first and renamed, so a failed export never
    leaves half a file.

    Raises:
        CommandError: the name's extension is not ``.json``, the file exists
            and ``overwrite`` is false, or writing failed.
    """
    path = export_path(name)
    if path.exists() and not overwrite:
        raise CommandError(f'File "{path}" already exists; pass --overwrite to replace it')

    entries = store.export_entries()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            _write_entries(file, entries)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CommandError(f'File "{path}" cannot be written: {exc.strerror or exc}') from None
    return path, len(entries)


def _write_entries(file: TextIO, entries: list[Any]) -> None:
    """Write what ``json.dumps(entries, indent=2)`` returns, and a newline, one entry at a time.

    A single ``json.dumps`` holds the GIL while it joins its pieces (about a
    second for a 300 MB export in one measurement), so other threads stall.
    Written per entry, they run in between.
    """
    if not entries:
        file.write("[]\n")
        return
    file.write("[\n")
    for position, entry in enumerate(entries):
        # JSON escapes newlines inside strings, so every newline here ends a line.
        text = json.dumps(entry, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        file.write(("  " if position == 0 else ",\n  ") + text)
    file.write("\n]\n")


def get_items(
    store: DataStore,
    key_or_pattern: str,
    *,
    limit: int = 100,
    reverse: bool = False,
    start: str | None = None,
    meta: bool = False,
    label: str | None = None,
) -> Any:
    """Return what ``data.get`` returns for a key or pattern, times in epoch milliseconds."""
    params = get_params(key_or_pattern, limit=limit, reverse=reverse, start=start, meta=meta, label=label)
    return store.call("get", params)


def remove_items(store: DataStore, key: str) -> bool:
    """Remove one item by its exact key; return True whether or not it existed."""
    return store.call("remove", {"key": key})


# The Typer commands.

DataDirOption = Annotated[
    Path, typer.Option("--data-dir", help="Folder of the data store.")
]


def _reject(message: str) -> NoReturn:
    """Print one line saying why the command cannot run, to stderr, and exit with status 1."""
    typer.echo(message, err=True)
    raise typer.Exit(1)


@contextmanager
def _opened_store(data_dir: Path) -> Iterator[DataStore]:
    try:
        store = DataStore.open(data_dir)
    except (StoreLockedError, StoreOpenError) as exc:
        _reject(str(exc))
    try:
        yield store
    finally:
        store.close()


def _check_store_exists(data_dir: Path) -> None:
    """Exit with one line unless ``data_dir`` contains a data store, so that a mistyped path creates nothing."""
    if not data_dir.exists():
        _reject(f"no data store in {data_dir}: the folder does not exist; check --data-dir")
    if not data_dir.is_dir():
        _reject(f"no data store in {data_dir}: it is not a folder; check --data-dir")
    if not (data_dir / JOURNAL_FILE_NAME).is_file():
        _reject(
            f"no data store in {data_dir}: the folder has no {JOURNAL_FILE_NAME}; check --data-dir, "
            "or create the store with `ampt-sandbox dev` or `ampt-sandbox data import`"
        )


def _run(
    data_dir: Path,
    offline: Callable[[DataStore], T],
    online: Callable[[AdminClient], T],
    *,
    create: bool = False,
) -> T:
    """Run a command through the sandbox running on ``data_dir``, or on the store itself.

    Without a running sandbox, the store is opened only when it exists,
    unless ``create`` is true.
    """
    from ..gateway.admin import AdminClient, AdminError, AdminUnavailable
    from .manage import running_sandbox

    state = running_sandbox(data_dir.resolve())
    if state is None:
        if not create:
            _check_store_exists(data_dir)
        with _opened_store(data_dir) as store:
            try:
                return offline(store)
            except (CommandError, DataError) as exc:
                _reject(str(exc))
    try:
        return online(AdminClient(state))
    except AdminError as exc:
        _reject(exc.message)
    except AdminUnavailable as exc:
        _reject(f"the sandbox running in {data_dir.resolve()} (process {state.pid}) does not respond: {exc}")


def _count(number: int, noun: str) -> str:
    """Return ``1 item`` or ``2 items``: the number and the noun in singular or plural."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _readable_times(value: Any) -> Any:
    """Return a result with its meta times as ISO 8601 strings in UTC."""
    if isinstance(value, dict):
        if "items" in value and isinstance(value["items"], list):
            return {**value, "items": [_readable_times(item) for item in value["items"]]}
        converted = dict(value)
        for field in ("created", "modified", "ttl"):
            if isinstance(converted.get(field), int):
                moment = datetime.fromtimestamp(converted[field] / 1000, tz=timezone.utc)
                converted[field] = moment.isoformat(timespec="milliseconds")
        return converted
    return value


@data_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSON file with an array of items.")] = Path(
        DEFAULT_DATA_FILE
    ),
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Delete every item of the store first, connection:* records included.",
        ),
    ] = False,
    data_dir: DataDirOption = Path(".ampt"),
) -> None:
    """Import items from a JSON file; each one overwrites its key, other keys stay."""
    if file.is_dir():
        _reject(folder_message(file))
    if not file.is_file():
        _reject(f'File "{file}" not found.')

    def offline(store: DataStore) -> dict[str, Any]:
        result = import_file(store, file, overwrite=overwrite)
        # With no sandbox running, no connection is open.
        return {
            "imported": result.imported,
            "deleted": result.deleted,
            "deleted_connections": result.deleted_connections,
            "deleted_live_connections": 0,
        }

    result = _run(data_dir, offline, lambda client: client.import_file(file, overwrite), create=True)
    if overwrite:
        typer.echo(f"Deleted {_count(result['deleted'], 'item')} before the import.")
        records = len(result.get("deleted_connections", []))
        live = result.get("deleted_live_connections", 0)
        if live:
            if live == 1:
                owners = "1 belonged to a live connection, whose socket stays open, but the app has lost its record"
            else:
                owners = (
                    f"{live} belonged to live connections, whose sockets stay open, "
                    "but the app has lost their records"
                )
            typer.echo(f"Warning: deleted {_count(records, 'connection:* record')}; {owners}.", err=True)
        elif records:
            typer.echo(
                f"Note: deleted {_count(records, 'connection:* record')}; none belonged to a live connection.",
                err=True,
            )
    typer.echo(f"Imported {_count(result['imported'], 'item')} from {file}.")


@data_app.command("export")
def export_command(
    file: Annotated[
        Path, typer.Argument(help='File to write; ".json" is added to a name without extension.')
    ] = Path(DEFAULT_DATA_FILE),
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", "-o", "--force", help="Replace the file if it exists."),
    ] = False,
    data_dir: DataDirOption = Path(".ampt"),
) -> None:
    """Export every item to a JSON file, indented by two spaces."""
    try:
        export_path(file)
    except CommandError as exc:
        _reject(str(exc))
    def online(client: AdminClient) -> tuple[Path, int]:
        reply = client.export_file(export_path(file), overwrite)
        return Path(reply["path"]), reply["count"]

    path, count = _run(data_dir, lambda store: export_file(store, file, overwrite=overwrite), online)
    typer.echo(f"Exported {_count(count, 'item')} to {path}.")


@data_app.command("get")
def get_command(
    key_or_pattern: Annotated[str, typer.Argument(help="A key, or a pattern such as ns:*.")],
    limit: Annotated[int, typer.Option(help="Maximum number of items of a pattern, 1 to 1000.")] = 100,
    reverse: Annotated[bool, typer.Option("--reverse", help="Return items in descending key order.")] = False,
    start: Annotated[
        str | None, typer.Option(help="The last_key of the previous page, to continue after it.")
    ] = None,
    meta: Annotated[
        bool, typer.Option("--meta", help="Include created, modified, ttl and the labels.")
    ] = False,
    label: Annotated[
        str | None, typer.Option(help="Match the pattern against this label (label1 to label5).")
    ] = None,
    data_dir: DataDirOption = Path(".ampt"),
) -> None:
    """Print the value of a key, or the items of a pattern, as JSON."""
    params = get_params(key_or_pattern, limit=limit, reverse=reverse, start=start, meta=meta, label=label)
    result = _run(
        data_dir,
        lambda store: store.call("get", params),
        lambda client: client.data("get", params),
    )
    _print_json(_readable_times(result) if meta else result)


@data_app.command("remove")
def remove_command(
    key: Annotated[str, typer.Argument(help="The exact key of the item; patterns are rejected.")],
    data_dir: DataDirOption = Path(".ampt"),
) -> None:
    """Remove one item and print true, whether or not it existed."""
    result = _run(
        data_dir,
        lambda store: remove_items(store, key),
        lambda client: client.data("remove", {"key": key}),
    )
    _print_json(result)
