"""bench_scale.py's memory readings: the anonymous and resident memory of a process and its
descendants (DataLoader workers) from /proc, sampled by a thread while the process runs."""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from _common import machine_cores

SAMPLE_S = 0.2
# samples between two readings of Pss_Anon: every second with cores to spare, else every 5 s
PSS_EVERY = 5 if machine_cores() >= 8 else 25


def read_status(pid: int) -> dict[str, int] | None:
    """RssAnon, RssFile, RssShmem, VmRSS, VmHWM of one process in bytes (None once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "RssShmem", "VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out if "RssAnon" in out else None  # a zombie (an exited worker) has no memory lines


def read_pss_anon(pid: int) -> int | None:
    """Pss_Anon from smaps_rollup: anonymous pages shared copy-on-write with forked workers count once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (DataLoader workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children_of(p))
    return found


def children_of(pid: int) -> list[int]:
    """From /proc/<pid>/task/*/children; kernels without that file are scanned for the parent pid."""
    try:
        kids = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(c) for c in f.read().split())
        return kids
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}/task/{pid}"):
            return []  # the process is gone
    except ProcessLookupError:
        return []
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return kids


class TreeWatcher(threading.Thread):
    """Samples the memory of a process and its descendants every ``SAMPLE_S`` seconds until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.max_workers = 0

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            tree = descendants(self.pid)
            now = time.time()
            statuses = {p: s for p in tree if (s := read_status(p)) is not None}
            if self.pid not in statuses:
                break
            main = statuses[self.pid]
            sample = {"t": now, "procs": len(statuses), "main_anon": main["RssAnon"], "main_file": main["RssFile"],
                      "main_shmem": main["RssShmem"], "main_rss": main["VmRSS"], "main_hwm": main["VmHWM"],
                      "tree_anon": sum(s["RssAnon"] for s in statuses.values()),
                      "tree_rss": sum(s["VmRSS"] for s in statuses.values()),
                      "tree_file": sum(s["RssFile"] for s in statuses.values())}
            if n % PSS_EVERY == 0:  # smaps_rollup walks the page tables: ~0.2 s for a process mapping 12 GB
                pss = [read_pss_anon(p) for p in statuses]
                sample["tree_pss_anon"] = sum(pss) if all(v is not None for v in pss) else None
            self.samples.append(sample)
            self.max_workers = max(self.max_workers, len(statuses) - 1)
            n += 1
            self.stop_event.wait(SAMPLE_S)

    def peak(self, key: str, start: float | None = None, end: float | None = None) -> int | None:
        values = [s[key] for s in self.samples if s.get(key) is not None
                  and (start is None or s["t"] >= start) and (end is None or s["t"] <= end)]
        return max(values) if values else None

    def at(self, key: str, t: float) -> int | None:
        """The first sample at or after ``t``."""
        later = [s for s in self.samples if s["t"] >= t and s.get(key) is not None]
        return later[0][key] if later else None

    def low(self, key: str, start: float, end: float) -> int | None:
        values = [s[key] for s in self.samples if start <= s["t"] <= end and s.get(key) is not None]
        return min(values) if values else None

    def before(self, key: str, t: float) -> int | None:
        """The last sample at or before ``t``."""
        earlier = [s for s in self.samples if s["t"] <= t and s.get(key) is not None]
        return earlier[-1][key] if earlier else None
