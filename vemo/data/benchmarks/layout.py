"""Writing vemo's label layout: labels.csv, classes.txt, splits/{train,val,test}.txt, plus the
preparation's report.json and skipped.csv.

Every file is written whole to a temporary file and renamed into place, and only when its content
changed. The content depends on the inputs and settings alone (no dates), so processes that
prepare the same data at once (DDP ranks, sweep workers) write the same bytes, and a reader sees
the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from vemo.data.benchmarks.problems import Skipped
from vemo.data.labels import write_labels
from vemo.data.splits import SPLITS
from vemo.errors import DataError
from vemo.io import csv_text, write_text_if_changed

SKIPPED_HEADER = ["split", "source", "line", "id", "reason", "detail"]


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
    write_labels(out, {vid: list(names) if multilabel else names[0] for vid, names in labels.items()}, classes,
                 multilabel=multilabel)
    for name in SPLITS:
        write_text_if_changed(out / "splits" / f"{name}.txt", "".join(f"{vid}\n" for vid in splits[name]))
    write_text_if_changed(out / "skipped.csv", csv_text([SKIPPED_HEADER] + [s.row() for s in skipped]))
    write_text_if_changed(out / "report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
