"""Label files: ``labels.csv`` with ``id,label`` (single-label) or ``id,labels`` (multi-label,
``|``-separated), optionally with ``classes.txt`` beside it fixing the class order."""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from vemo.errors import DataError
from vemo.io import csv_text, write_text_if_changed

MULTI_SEPARATOR = "|"


class LabelError(DataError):
    """A label file is missing or malformed; the message names the file and line."""


@dataclass
class Labels:
    classes: list[str]
    targets: dict[str, list[int]]  # video id -> class indices (exactly one unless multilabel)
    multilabel: bool

    def target_array(self, ids: list[str]) -> np.ndarray:
        """long[N] for single-label, float32[N, C] multi-hot for multi-label."""
        if not self.multilabel:
            return np.array([self.targets[i][0] for i in ids], dtype=np.int64)
        out = np.zeros((len(ids), len(self.classes)), dtype=np.float32)
        for row, vid in enumerate(ids):
            out[row, self.targets[vid]] = 1.0
        return out

    def stratum(self, vid: str, class_counts: np.ndarray) -> int:
        """The class a stratified split balances on: the label, or the rarest of several."""
        idx = self.targets[vid]
        return int(min(idx, key=lambda c: (class_counts[c], c)))


# "utf-8-sig": a byte-order mark (spreadsheet exports write one) is dropped, not read as part of a name
TEXT_ENCODING = "utf-8-sig"


def read_classes(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding=TEXT_ENCODING).splitlines() if line.strip()]
    # tolerate the "1 anger" style of classInd.txt files
    names = [n.split(maxsplit=1)[1] if n.split(maxsplit=1)[0].isdigit() and " " in n else n for n in names]
    if len(set(names)) != len(names):
        raise LabelError(f"{path} lists a class twice")
    if not names:
        raise LabelError(f"{path} lists no classes")
    return names


def read_labels(path: str | Path, classes_path: str | Path | None = None) -> Labels:
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"label file {path} does not exist")
    if classes_path is None and (path.parent / "classes.txt").is_file():
        classes_path = path.parent / "classes.txt"
    classes = read_classes(Path(classes_path)) if classes_path else None

    raw: dict[str, list[str]] = {}
    with open(path, newline="", encoding=TEXT_ENCODING) as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "id" not in fields or not ({"label", "labels"} & set(fields)):
            raise LabelError(f"{path}: the header must have an 'id' column and a 'label' (one class) "
                             f"or 'labels' (several, separated by '{MULTI_SEPARATOR}') column; "
                             f"found {fields}")
        multilabel = "labels" in fields
        column = "labels" if multilabel else "label"
        for line, row in enumerate(reader, start=2):
            vid, value = (row.get("id") or "").strip(), (row.get(column) or "").strip()
            if not vid:
                raise LabelError(f"{path}:{line}: empty video id")
            names = [v.strip() for v in value.split(MULTI_SEPARATOR)] if multilabel else [value]
            names = [n for n in names if n]
            if not names and not multilabel:
                raise LabelError(f"{path}:{line}: video {vid!r} has an empty label")
            if vid in raw and raw[vid] != names:
                raise LabelError(f"{path}:{line}: video {vid!r} appears twice with different labels")
            raw[vid] = names
    if not raw:
        raise LabelError(f"{path} holds no labelled videos")
    if classes is None:
        classes = sorted({n for names in raw.values() for n in names})
    index = {c: i for i, c in enumerate(classes)}
    targets = {}
    for vid, names in raw.items():
        unknown = [n for n in names if n not in index]
        if unknown:
            raise LabelError(f"{path}: video {vid!r} has label(s) {unknown} that are not among the "
                             f"classes {classes}")
        targets[vid] = sorted(index[n] for n in names)
    return Labels(classes=classes, targets=targets, multilabel=multilabel)


def match_labels_to_store(labelled: set[str], stored: set[str], labels_path: Path, store_path: Path,
                          min_overlap: float) -> set[str]:
    """The videos that have both a label and features; says how many of each side are left out.

    Refuses when the two share less than ``min_overlap`` of the smaller side (a labels file meant for
    another store, ids written differently): a run on the few matching videos would mislead.
    """
    both = labelled & stored
    smaller = min(len(labelled), len(stored))
    share = len(both) / smaller if smaller else 0.0
    if not both or share < min_overlap:
        raise LabelError(
            f"{labels_path} and the store {store_path} share {len(both)} video ids ({share:.0%} of the "
            f"{'labelled videos' if len(labelled) <= len(stored) else 'stored videos'}; data.min_label_overlap="
            f"{min_overlap:g}): is the labels file meant for another store? Label ids look like "
            f"{_examples(labelled - both)}, store ids like {_examples(stored - both)}")
    for left_out, what in ((labelled - stored, f"labelled videos in {labels_path} have no features in "
                                               f"the store {store_path}"),
                           (stored - labelled, f"videos in the store {store_path} have no label in {labels_path}")):
        if left_out:
            total = len(labelled) if left_out <= labelled else len(stored)
            warnings.warn(f"{len(left_out)} of {total} {what} and are left out (e.g. {_examples(left_out)})",
                          stacklevel=2)
    return both


def _examples(ids: set[str], n: int = 3) -> str:
    return ", ".join(repr(v) for v in sorted(ids)[:n]) or "(none)"


def write_labels(folder: str | Path, labels: Mapping[str, str | Sequence[str]], classes: Sequence[str],
                 multilabel: bool | None = None, refuse_other: bool = False) -> list[Path]:
    """Write ``labels.csv`` (rows sorted by id) and ``classes.txt`` (in ``classes`` order) into
    ``folder``: the one writer of vemo's label files. Each file is written atomically and only when
    its content changes. ``multilabel``: an ``id,labels`` column of ``|``-joined names (default: when
    the values are lists). ``refuse_other``: a file already there with other content is an error,
    not overwritten (an importer never replaces labels a user made)."""
    folder = Path(folder)
    if multilabel is None:
        multilabel = any(not isinstance(v, str) for v in labels.values())
    if multilabel:
        rows = [["id", "labels"]] + [[vid, MULTI_SEPARATOR.join(labels[vid])] for vid in sorted(labels)]
    else:
        rows = [["id", "label"]] + [[vid, labels[vid]] for vid in sorted(labels)]
    files = {folder / "labels.csv": csv_text(rows), folder / "classes.txt": "".join(f"{c}\n" for c in classes)}
    if refuse_other:  # both checked before either is written, so a refusal leaves nothing half done
        for path, text in files.items():
            if path.exists() and path.read_text(encoding="utf-8") != text:
                write_text_if_changed(path, text, refuse_other=True)  # raises, naming the file
    for path, text in files.items():
        write_text_if_changed(path, text)
    return list(files)
