"""Run every benchmark of the project in one go and record the results in README.md.

Each benchmark script runs in its own process, in this order: relay, limits,
reload, store, live view and scale (each only where its script exists).
Their progress shows on standard error as they run. Each script prints its
results as Markdown on standard output, and run.py writes them into
benchmarks/README.md:

- Where README.md contains the lines ``<!-- run.py: begin NAME -->`` and
  ``<!-- run.py: end NAME -->``, everything between them is replaced by a
  line naming the date, CPU count and Python version, then the script's
  whole output.
- Otherwise, in the section under the benchmark's heading, a Markdown table
  is replaced by the output's table with the same header row. The rest of
  the section stays as it is, so its text may then quote older figures.

A script that fails leaves its part of README.md unchanged, and run.py then
exits with status 1 once the others have run.

Run: .venv/bin/python benchmarks/run.py [--only relay,limits] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
SCRIPT_TIMEOUT = 15 * 60  # seconds; a script still running then is stopped


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    heading: str  # the README section's heading, without the leading "## "


BENCHMARKS = [
    Benchmark("relay", "relay_bench.py", "Message relay"),
    Benchmark("limits", "limits_bench.py", "Limits"),
    Benchmark("reload", "reload_bench.py", "Reload"),
    Benchmark("store", "store_bench.py", "Data store"),
    Benchmark("liveview", "liveview_bench.py", "Live view"),
    Benchmark("scale", "scale_bench.py", "Scale"),
]


def run_script(benchmark: Benchmark) -> str | None:
    """Run one benchmark script; return its standard output, or None when it failed."""
    command = [sys.executable, str(BENCH_DIR / benchmark.script)]
    print(f"== {benchmark.name}: {' '.join(command)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.PIPE, text=True)
    try:
        output, _ = process.communicate(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"== {benchmark.name}: still running after {SCRIPT_TIMEOUT} s; stopping it", file=sys.stderr)
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        return None
    except KeyboardInterrupt:
        # The script got the same Ctrl-C and stops its own servers; wait for it.
        process.wait()
        raise
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        print(f"== {benchmark.name}: failed with exit status {process.returncode} after {elapsed:.0f} s", file=sys.stderr)
        return None
    print(f"== {benchmark.name}: done in {elapsed:.0f} s", file=sys.stderr, flush=True)
    return output


def split_sections(text: str) -> list[str]:
    """Split Markdown text before every level-2 heading; joining the parts gives the text back."""
    starts = [match.start() for match in re.finditer(r"^## ", text, flags=re.MULTILINE)]
    bounds = [0, *starts, len(text)]
    return [text[begin:end] for begin, end in zip(bounds, bounds[1:]) if end > begin]


def tables_in(text: str) -> list[str]:
    """Return each block of consecutive lines that start with '|', lines joined with newlines."""
    return [match.group(0) for match in re.finditer(r"(?:^\|.*(?:\n|$))+", text, flags=re.MULTILINE)]


def replace_between_markers(text: str, benchmark: Benchmark, output: str, run_line: str) -> str | None:
    """Return ``text`` with the output between the benchmark's marker lines, or None without markers."""
    begin = f"<!-- run.py: begin {benchmark.name} -->"
    end = f"<!-- run.py: end {benchmark.name} -->"
    if begin not in text or end not in text.split(begin, 1)[1]:
        return None
    head, rest = text.split(begin, 1)
    _old, tail = rest.split(end, 1)
    return f"{head}{begin}\n{run_line}\n\n{output.strip()}\n{end}{tail}"


def replace_tables(section: str, output: str) -> tuple[str, str]:
    """Return the section with its tables replaced by the output's, and a sentence saying what changed."""
    replaced = 0
    for new_table in tables_in(output):
        header = new_table.splitlines()[0]
        for old_table in tables_in(section):
            if old_table.splitlines()[0] == header:
                ending = "\n" if not new_table.endswith("\n") and old_table.endswith("\n") else ""
                section = section.replace(old_table, new_table + ending, 1)
                replaced += 1
                break
    if not replaced:
        return section, "left unchanged: no markers and no table with the same header row"
    return section, f"{replaced} table(s) replaced; the section's text may quote older figures"


def write_results(outputs: dict[str, str], run_line: str) -> None:
    text = README.read_text()
    for benchmark in BENCHMARKS:
        if benchmark.name not in outputs:
            continue
        output = outputs[benchmark.name]
        updated = replace_between_markers(text, benchmark, output, run_line)
        if updated is not None:
            text, outcome = updated, "results replaced"
        else:
            sections = split_sections(text)
            for index, section in enumerate(sections):
                if section.startswith(f"## {benchmark.heading}\n"):
                    sections[index], outcome = replace_tables(section, output)
                    break
            else:
                outcome = f"left unchanged: README.md has no markers for it and no '## {benchmark.heading}' section"
            text = "".join(sections)
        print(f"README.md, {benchmark.name}: {outcome}", file=sys.stderr)
    README.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [benchmark.name for benchmark in BENCHMARKS]
    parser.add_argument("--only", help=f"comma-separated benchmarks to run, of: {', '.join(names)} (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print the results but leave README.md unchanged")
    args = parser.parse_args()

    selected = BENCHMARKS
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in names]
        if unknown:
            sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        selected = [benchmark for benchmark in BENCHMARKS if benchmark.name in wanted]

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    outputs: dict[str, str] = {}
    failed: list[str] = []
    for benchmark in selected:
        if not (BENCH_DIR / benchmark.script).exists():
            print(f"== {benchmark.name}: skipped, {benchmark.script} does not exist", file=sys.stderr)
            continue
        output = run_script(benchmark)
        if output is None:
            failed.append(benchmark.name)
            continue
        outputs[benchmark.name] = output
        print(f"\n## {benchmark.heading}\n\n{output.strip()}\n", flush=True)

    run_line = (
        f"Last run by `benchmarks/run.py` on {datetime.date.today().isoformat()}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}."
    )
    if outputs and not args.no_write:
        write_results(outputs, run_line)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("Interrupted; README.md was not changed.", file=sys.stderr)
        sys.exit(130)
