"""Helpers shared by the benchmark scripts that fit in child processes (scale_benchmark.py, driver_memory_benchmark.py).

What it holds
- The scripts' `main` (`run_main`: parse the arguments, then run one fit in the child or all of them in the parent).
- Arguments: UsageError (a bad argument: one line on stderr, exit code 2), an ArgumentParser that raises it instead
  of exiting, row counts such as '200k' or '1.5M' (`parse_count`) and their labels (`size_label`), and the checks
  the scripts' arguments share.
- Processes and their memory, read from Linux /proc: `status_kib` (VmHWM, VmRSS, ...), the process tree
  (`process_table`, `descendants`), the JVM a PySpark driver process started (`find_jvm`) and its -Xmx
  (`jvm_max_heap`).
- Child processes: a child prints one result line, a prefix and then JSON (`print_result`); the parent runs it
  and reads that line back (`run_child_process`).
- Polling threads (`Poller`), table formatting (`fmt`, `table_lines`), the machine's size (`machine`), the JSON
  results file (`write_json`), and the scripts' `[prog] message` log lines (`logger`).

Pure standard library: nothing here imports numpy, pyspark or sparkgmm, so the parent processes, which never need
them, stay light. The scripts are run as `python scripts/X.py`, so this directory is on sys.path and they import
this module as `benchtools`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn

MIB = float(1 << 20)


# --- main and arguments ---------------------------------------------------------------------------------------------

class UsageError(Exception):
    """A bad argument: one line on stderr, exit code 2."""


def run_main(prog: str, argv: list[str] | None, parse_args: Callable[[list[str]], argparse.Namespace],
             run_child: Callable[[argparse.Namespace], None],
             run_parent: Callable[[argparse.Namespace], list[dict]]) -> int:
    """A script's main, returning its exit code: ``parse_args(argv)`` (sys.argv[1:] if None; a UsageError prints
    ``prog: error: ...`` and gives 2); then with ``args.child`` ``run_child(args)`` (0); otherwise
    ``run_parent(args)``, which returns its fits' results: 1 if one of them ``failed``, else 0."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if args.child:
        run_child(args)
        return 0
    return 1 if any(r["failed"] for r in run_parent(args)) else 0


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a bad argument raises UsageError (one line, exit 2) instead of printing the usage."""

    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise UsageError(message)


_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_count(text: str, option: str, *, kind: str = "count", examples: str = "200k, 1M, 1000000",
                unit: str | None = None) -> int:
    """'200k', '1M', '1.5M', '100000' -> a positive whole number. A bad one raises UsageError naming ``option``:
    "is not a {kind} (e.g. {examples})", "must be a positive whole number[ of {unit}]"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)\s*", text, re.IGNORECASE)
    if not match:
        raise UsageError(f"{option}: {text!r} is not a {kind} (e.g. {examples})")
    value = float(match.group(1)) * _SUFFIXES[match.group(2).lower()]
    if value < 1 or value != int(value):
        raise UsageError(f"{option}: {text!r} must be a positive whole number" + (f" of {unit}" if unit else ""))
    return int(value)


def size_label(rows: int) -> str:
    """1000000 -> '1M', 1500000 -> '1.5M', 200000 -> '200k'; other counts as they are."""
    for suffix, unit in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if rows >= unit and rows % (unit // 10 if unit > 1000 else unit) == 0:
            value = rows / unit
            return f"{value:g}{suffix}"
    return str(rows)


def check_at_least(args: argparse.Namespace, minimums: Iterable[tuple[str, int]]) -> None:
    """UsageError unless every ``args.<name>`` is at least its minimum."""
    for name, low in minimums:
        if getattr(args, name) < low:
            raise UsageError(f"--{name.replace('_', '-')}: {getattr(args, name)} must be >= {low}")


def check_k_rows(k: int, rows: int, detail: str) -> None:
    """UsageError unless ``rows`` (the fewest rows of a fit) can hold k components; ``detail`` ends the message."""
    if k > rows:
        raise UsageError(f"--k: {k} components need at least {k} rows; {detail}")


def check_driver_memory(text: str, examples: str) -> None:
    """UsageError unless ``text`` is a JVM memory size such as 4g or 4096m (``examples`` shows two)."""
    if not re.fullmatch(r"\d+[kmgt]?", text, re.IGNORECASE):
        raise UsageError(f"--driver-memory: {text!r} is not a JVM memory size (e.g. {examples})")


def check_json_path(path: str) -> None:
    """UsageError unless the directory the --json file goes in exists."""
    if not Path(path).resolve().parent.is_dir():
        raise UsageError(f"--json: directory of {path!r} does not exist")


# --- processes and their memory (Linux /proc) ----------------------------------------------------------------------

def status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmHWM: peak resident set; VmRSS: now), or None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_status_kib(field: str) -> int:
    """``status_kib`` of this very process, which is alive: None there can only mean no /proc (not Linux), an error."""
    kib = status_kib(os.getpid(), field)
    if kib is None:
        raise RuntimeError(f"/proc/{os.getpid()}/status has no {field}: the memory benchmarks need Linux")
    return kib


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        head, _, tail = stat.rpartition(")")
        table[int(entry)] = (int(tail.split()[1]), head.partition("(")[2])
    return table


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> list[tuple[int, str]]:
    """(pid, command name) of every process below ``root``: its children first, then theirs."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append((child, table[child][1]))
            queue.append(child)
    return found


def find_jvm(root: int, *, children_only: bool = False) -> int | None:
    """The first ``java`` process below ``root``; with ``children_only``, only a ``java`` process whose parent is
    ``root`` (PySpark's launcher execs java in the process it starts)."""
    table = process_table()
    below = ([(pid, name) for pid, (ppid, name) in table.items() if ppid == root] if children_only
             else descendants(root, table))
    for pid, name in below:
        if name == "java":
            return pid
    return None


def jvm_max_heap(pid: int) -> str | None:
    """The -Xmx a JVM was started with ('4g'), or None."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for argument in arguments:
        if argument.startswith(b"-Xmx"):
            return argument[4:].decode()
    return None


class Poller(threading.Thread):
    """A daemon thread that calls ``sample()`` every ``interval`` seconds (at once too, with ``sample_first``) from
    ``start()`` until ``finish()``, which stops it and samples one last time. Subclasses define ``sample``."""

    def __init__(self, interval: float, sample_first: bool = False):
        super().__init__(daemon=True)
        self._interval, self._sample_first = interval, sample_first
        self._stop_event = threading.Event()

    def sample(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        if self._sample_first:
            self.sample()
        while not self._stop_event.wait(self._interval):
            self.sample()

    def finish(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


# --- child processes ------------------------------------------------------------------------------------------------

def print_result(prefix: str, result: dict) -> None:
    """In the child: its result, one line on stdout, ``prefix`` then JSON."""
    print(prefix + json.dumps(result), flush=True)


def run_child_process(command: Sequence[str], prefix: str) -> tuple[dict | None, int, float]:
    """Run ``command``; its stdout carries its result line (``print_result``), its stderr goes to ours. Returns the
    result of the last line that starts with ``prefix`` (None if the process failed or printed none), its exit
    code and its wall seconds."""
    started = time.perf_counter()
    process = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    lines = [line for line in process.stdout.splitlines() if line.startswith(prefix)]
    if process.returncode != 0 or not lines:
        return None, process.returncode, seconds
    return json.loads(lines[-1][len(prefix):]), process.returncode, seconds


# --- output ---------------------------------------------------------------------------------------------------------

def logger(prog: str) -> Callable[[str], None]:
    """``log(message)``: ``[prog] message`` on stderr, flushed."""
    def log(message: str) -> None:
        print(f"[{prog}] {message}", file=sys.stderr, flush=True)

    return log


def fmt(value, spec: str, missing: str = "-") -> str:
    """``value`` formatted with ``spec``, or ``missing`` for None."""
    return missing if value is None else format(value, spec)


def table_lines(columns: Sequence[tuple[str, int, Callable[[dict], str]]], results: Iterable[dict],
                failed_row: Callable[[dict], str]) -> list[str]:
    """A header, a rule, then a row per result: its values right-aligned under ``columns`` (header, width, value of a
    result), or ``failed_row(result)`` where ``result["failed"]``."""
    header = " | ".join(f"{name:>{width}}" for name, width, _ in columns)
    lines = [header, "-" * len(header)]
    for r in results:
        if r["failed"]:
            lines.append(failed_row(r))
        else:
            lines.append(" | ".join(f"{value(r):>{width}}" for _, width, value in columns))
    return lines


def machine() -> dict:
    """This machine's CPUs and physical memory (bytes), for the JSON results."""
    return {"cpus": os.cpu_count(), "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}


def write_json(path: str, document: dict, log: Callable[[str], None]) -> None:
    """``document`` as indented JSON in ``path``, then ``log`` says so."""
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
    log(f"results written to {path}")
