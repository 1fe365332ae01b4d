"""Writing vemo's label layout: labels.csv, classes.txt, splits/{train,val,test}.txt, plus the
preparation's report.json and skipped.csv.

Every file is written whole to a temporary file and renamed into place, and only when its content
changed. The content depends on the inputs and settings alone (no dates), so processes that
prepare the same data at once (DDP ranks, sweep workers) write the same bytes, and a reader sees
the old file or the new one, never half of one.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from vemo.data.labels import MULTI_SEPARATOR
from vemo.data.splits import SPLITS
from vemo.data.benchmarks.problems import Skipped
from vemo.errors import DataError
from vemo.io import atomic_write_bytes

SKIPPED_HEADER = ["split", "source", "line", "id", "reason", "detail"]


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically replace ``path`` with ``text`` unless it already holds it; True when written."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    atomic_write_bytes(path, data)
    return True


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _check_id(vid: str) -> None:
    # split files are one id per line with '#' comments: such ids would be read back differently
    if not vid or vid != vid.strip() or "#" in vid or "\n" in vid or "\r" in vid:
        raise DataError(f"store id {vid!r} cannot be written to a split file (it is empty, has '#', a line break "
                        "or surrounding spaces)")


def write_layout(out: Path, classes: Sequence[str], labels: Mapping[str, Sequence[str]], multilabel: bool,
                 splits: Mapping[str, Sequence[str]], report: Mapping[str, Any], skipped: Sequence[Skipped]) -> None:
    """Write the layout into ``out``; ``labels`` holds every id of ``splits``."""
    for ids in splits.values():
        for vid in ids:
            _check_id(vid)
    column = "labels" if multilabel else "label"
    rows = [["id", column]] + [[vid, MULTI_SEPARATOR.join(labels[vid])] for vid in sorted(labels)]
    write_if_changed(out / "classes.txt", "".join(f"{c}\n" for c in classes))
    write_if_changed(out / "labels.csv", _csv_text(rows))
    for name in SPLITS:
        write_if_changed(out / "splits" / f"{name}.txt", "".join(f"{vid}\n" for vid in splits[name]))
    write_if_changed(out / "skipped.csv", _csv_text([SKIPPED_HEADER] + [s.row() for s in skipped]))
    write_if_changed(out / "report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
