"""Benchmark the data store against TinyDB's stock JSONStorage, in one run.

For each store size (100, 10,000 and 100,000 items) both stores are loaded
with the same items, then timed on the same operations:

- write: a merge-mode ``set`` of one existing key (the stock store does a
  TinyDB ``upsert`` of the merged value, which rewrites its whole JSON file);
- get: an exact key;
- page: ``get("ns:*", limit=100)``, the first page of the collection (the
  stock store searches, sorts and slices, re-reading its file as it does on
  every read).

The journal store runs as ``ampt-sandbox dev`` runs it: each write reaches
the operating system before the call returns (durable against SIGKILL) and
fsync runs at most once a second. A second journal row fsyncs every write,
which is durable against a power loss too.

A stock write costs about 0.5 s at 100,000 items, so the stock store is
sampled with fewer operations at the larger sizes; the table gives the count
of each row.

Run: .venv/bin/python benchmarks/store_bench.py [--sizes 100 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tinydb import TinyDB, where
from tinydb.storages import JSONStorage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ampt_sandbox.store import DataStore  # noqa: E402

# Operations timed per row: (journal, journal with fsync per write, stock).
WRITES = {100: (5000, 500, 500), 10_000: (5000, 500, 100), 100_000: (5000, 500, 10)}
GETS = {100: (5000, 500), 10_000: (5000, 100), 100_000: (5000, 10)}
PAGES = {100: (2000, 200), 10_000: (2000, 50), 100_000: (2000, 5)}


def item_value(number: int) -> dict:
    return {"name": f"user {number}", "score": number % 1000, "tags": ["a", "b"], "active": True}


def key_of(number: int) -> str:
    return f"ns:{number:08d}"


def timed(operation: Callable[[int], object], count: int, size: int, seed: int) -> list[float]:
    """Run ``operation`` on ``count`` random item numbers; return each duration in seconds."""
    numbers = random.Random(seed).choices(range(size), k=count)
    durations = []
    for number in numbers:
        start = time.perf_counter()
        operation(number)
        durations.append(time.perf_counter() - start)
    return durations


def summary(durations: list[float]) -> tuple[float, float, float]:
    """Return operations per second, p50 and p99 in milliseconds."""
    ordered = sorted(durations)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return len(ordered) / sum(ordered), statistics.median(ordered) * 1000, p99 * 1000


def bench_journal(directory: Path, size: int, fsync_interval: float, writes: int) -> dict:
    store = DataStore.open(directory, fsync_interval=fsync_interval)
    store.import_entries([{"key": key_of(n), "value": item_value(n)} for n in range(size)])
    store.close()

    start = time.perf_counter()
    store = DataStore.open(directory, fsync_interval=fsync_interval)
    open_seconds = time.perf_counter() - start
    try:
        results = {"open_s": open_seconds}
        results["write"] = timed(
            lambda n: store.call("set", {"key": key_of(n), "value": {"score": n + 1}}),
            writes,
            size,
            seed=1,
        )
        if fsync_interval > 0:
            gets, pages = GETS[size][0], PAGES[size][0]
            results["get"] = timed(lambda n: store.call("get", {"key": key_of(n)}), gets, size, 2)
            results["page"] = timed(
                lambda n: store.call("get", {"key": "ns:*", "limit": 100}), pages, size, 3
            )
            # Compaction runs inside a write once the journal contains as
            # many superseded lines as live items (at least 10,000). The write
            # rows do not include that rare stall, so it is timed here.
            start = time.perf_counter()
            store.storage.compact()
            results["compact_s"] = time.perf_counter() - start
        return results
    finally:
        store.close()


def bench_stock(path: Path, size: int) -> dict:
    database = TinyDB(path, storage=JSONStorage)
    table = database.table("items")
    table.insert_multiple({"key": key_of(n), "value": item_value(n)} for n in range(size))

    def write(number: int) -> None:
        # A plain upsert of the merged value, without reading the stored
        # one first: less work than the journal store's merge, so the
        # comparison favours the stock store.
        value = {**item_value(number), "score": number + 1}
        table.upsert({"key": key_of(number), "value": value}, where("key") == key_of(number))

    def page(number: int) -> object:
        found = table.search(where("key").test(lambda key: key.startswith("ns:")))
        found.sort(key=lambda document: document["key"])
        return found[:100]

    try:
        # The query cache would hide the re-read of the file that a
        # stock read costs, so it is cleared before each timed read.
        def get(number: int) -> object:
            table.clear_cache()
            return table.get(where("key") == key_of(number))

        def uncached_page(number: int) -> object:
            table.clear_cache()
            return page(number)

        return {
            "write": timed(write, WRITES[size][2], size, seed=1),
            "get": timed(get, GETS[size][1], size, seed=2),
            "page": timed(uncached_page, PAGES[size][1], size, seed=3),
        }
    finally:
        database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000, 100_000])
    arguments = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print()
    print("| items | store | operation | count | ops/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for size in arguments.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            journal = bench_journal(root / "journal", size, 1.0, WRITES[size][0])
            synced = bench_journal(root / "synced", size, 0.0, WRITES[size][1])
            stock = bench_stock(root / "stock.json", size)

        rows = [
            ("journal", journal, ("write", "get", "page")),
            ("journal, fsync per write", synced, ("write",)),
            ("stock JSONStorage", stock, ("write", "get", "page")),
        ]
        for name, results, operations in rows:
            for operation in operations:
                rate, p50, p99 = summary(results[operation])
                print(f"| {size:,} | {name} | {operation} | {len(results[operation])} | "
                      f"{rate:,.0f} | {p50:.3f} | {p99:.3f} |")
        write_ratio = statistics.median(stock["write"]) / statistics.median(journal["write"])
        ratios.append((size, write_ratio, journal["open_s"], journal["compact_s"]))

    print()
    for size, ratio, open_seconds, compact_seconds in ratios:
        print(f"{size:,} items: journal write p50 is {ratio:,.0f}x faster than stock; "
              f"opening the journal took {open_seconds * 1000:.0f} ms, "
              f"a compaction {compact_seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
