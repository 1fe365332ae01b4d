"""Helpers the benchmark scripts share: the run header, memory readings, tables, child processes.

Not part of vemo; the scripts import it from their own folder (``python benchmarks/<script>.py``).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

RESULT_PREFIX = "BENCH_RESULT "  # the one stdout line a child process hands its figures back on


def machine_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def print_header(title: str, threads: int | str | None = None) -> None:
    """Command line, versions, threads, cores and the load average, so a figure can be read in context."""
    import numpy as np
    import torch

    import vemo

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"== {title}")
    print(f"command   : {shlex.join([sys.executable] + sys.argv)}")
    print(f"python    : {platform.python_version()}  torch {torch.__version__}  numpy {np.__version__}  "
          f"vemo {vemo.__version__}")
    print(f"machine   : {platform.machine()}, {machine_cores()} cores usable "
          f"(os.cpu_count()={os.cpu_count()}), torch threads {threads if threads is not None else torch.get_num_threads()}")
    print(f"load avg  : {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) at start; "
          "other work on the machine lowers every figure")
    if load[0] >= machine_cores() - 0.5:
        print(f"WARNING   : the 1-min load average ({load[0]:.2f}) is near or above the {machine_cores()} cores: other "
              "processes are running. Figures will be low and noisy, and torch threads beyond the idle cores "
              "oversubscribe the CPU (compare --threads 1).")
    print(flush=True)


# ---------------------------------------------------------------- memory
def proc_status() -> dict[str, int]:
    """Memory lines of /proc/self/status in bytes (VmRSS, VmHWM, RssAnon, RssFile, ...); {} off Linux."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def _maxrss_bytes(who: int) -> int:
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # Linux reports kB, macOS bytes


def rss_now() -> int:
    return proc_status().get("VmRSS", 0)


def rss_peak() -> int:
    """Peak resident set size of this process so far (VmHWM; ru_maxrss where /proc is missing)."""
    return proc_status().get("VmHWM") or _maxrss_bytes(resource.RUSAGE_SELF)


def children_peak_rss() -> int:
    """Largest peak RSS of any child this process has waited for (e.g. finished DataLoader workers)."""
    return _maxrss_bytes(resource.RUSAGE_CHILDREN)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: writing 5 to clear_refs). False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mapped_rss(prefix: str | Path) -> int | None:
    """Resident bytes of this process's file mappings under ``prefix`` (from /proc/self/smaps), e.g. the
    pages of a memory-mapped feature store; None where smaps is unavailable."""
    prefix = str(Path(prefix).resolve())
    total, inside = 0, False
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(maxsplit=1)[0]
                if "-" in first and not first.endswith(":"):  # a mapping's header line
                    parts = line.split(maxsplit=5)
                    inside = len(parts) == 6 and parts[5].strip().startswith(prefix)
                elif inside and first == "Rss:":
                    total += int(line.split()[1]) * 1024
    except OSError:
        return None
    return total


def mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f}"


# ---------------------------------------------------------------- tables
def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> None:
    """A plain fixed-width table; ``align`` holds one 'l' or 'r' per column (numbers right)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align))

    print(fmt(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(fmt(row))
    print(flush=True)


# ---------------------------------------------------------------- child processes
def run_child(script: str | Path, args: Sequence[str]) -> dict[str, Any]:
    """Run ``python script args...`` in a fresh process and return the dict it emitted with ``emit``.

    Each measured variant gets its own process, so its peak RSS is its own and no allocator or page
    state leaks from one variant into the next. The child's stderr (progress) passes through.
    """
    cmd = [sys.executable, str(script), *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        else:
            print(line)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"benchmark child failed (exit {proc.returncode}): {shlex.join(cmd)}")
    return result


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def log(msg: str) -> None:
    """Progress goes to stderr, so the tables on stdout stay clean."""
    print(msg, file=sys.stderr, flush=True)


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
