"""Watch the app's source files and reload the runtime when they change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import watchfiles

logger = logging.getLogger("ampt_sandbox.gateway.reloader")


def describe_changes(changes: set[tuple[watchfiles.Change, str]], root: Path) -> str:
    names = []
    for change, path in sorted(changes, key=lambda item: item[1]):
        try:
            shown = str(Path(path).relative_to(root))
        except ValueError:
            shown = path
        names.append(f"{shown} {change.name}")
    if len(names) > 5:
        names = names[:5] + [f"and {len(names) - 5} more"]
    return ", ".join(names)


async def watch_and_reload(
    app: Path,
    extra_paths: list[Path],
    reload: Callable[[str], Awaitable[object]],
    abort_load: Callable[[], None],
) -> None:
    """Call ``reload(description)`` after each batch of changes to Python files.

    watchfiles groups changes that arrive within 50 ms of each other, so a
    burst of saves gives one reload. A deleted app file is reported and
    skipped; the last loaded code keeps serving until the file returns. A
    change that arrives while a load still runs ends that load with
    ``abort_load``, so an import that hangs does not delay the next save's load.
    """
    root = app.parent
    paths = [root, *extra_paths]
    pending: asyncio.Future[object] | None = None
    async for changes in watchfiles.awatch(*paths, watch_filter=watchfiles.PythonFilter(), step=50):
        description = describe_changes(changes, root)
        if not app.exists():
            logger.warning(
                "%s was deleted (%s); the last loaded code keeps serving until the file is back",
                app.name, description,
            )
            continue
        logger.info("Reloading: %s", description)
        # The newest change wins: a load still running (this watcher's or
        # the first one) is ended, and the new one starts after it.
        abort_load()
        pending = asyncio.ensure_future(reload(description))
