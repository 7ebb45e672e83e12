"""Seeding the data store from a JSON file at start, and again when it changes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import watchfiles

logger = logging.getLogger("ampt_sandbox.gateway.seed")


def seed_store(store: Any, path: Path) -> bool:
    """Import ``path`` into ``store``, each item an overwrite of its key; return whether it worked.

    Like the cloud's dev mode, seeding never deletes other keys.
    """
    from ..cli.data_commands import CommandError, import_file
    from ..errors import DataError

    try:
        result = import_file(store, path, overwrite=False)
    except (CommandError, DataError) as exc:
        logger.error("Seeding from %s failed, the store is unchanged: %s", path, exc)
        return False
    logger.info("Seeded %d item%s from %s", result.imported, "" if result.imported == 1 else "s", path)
    return True


async def watch_seed(store: Any, path: Path) -> None:
    """Import ``path`` again each time it is saved (``--reseed``)."""
    target = path.resolve()
    async for changes in watchfiles.awatch(target.parent, step=50):
        if any(Path(changed).resolve() == target for _change, changed in changes) and target.is_file():
            seed_store(store, target)
