"""VideoEmotion-8: eight emotions (Plutchik's), reported as mean and std over 10 train/test splits.

``split`` (1-based, like ``trainlist01.txt``) picks one split. Its files, in order of preference:

- ``lists``: a folder with ``classInd.txt`` and the official ``trainlistNN.txt`` / ``testlistNN.txt``
  (same line format as Ekman-6); split ``k`` is the pair numbered ``k``;
- otherwise the labels come from ``labels_file`` (a table with an id and a label column) or, without
  one, from the class folder in each store id (``Anger/xyz`` -> anger), and split ``k`` is a
  stratified draw of ``test_fraction`` (1/3: the 2:1 protocol) of each class as test, seeded by
  (``split_seed``, ``k``), one of ``num_splits``.

Validation is ``val_fraction`` of each class of the split's train part, drawn with the same seeds.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from vemo.data.benchmarks.base import BenchmarkAdapter, Built, check_split_seed, fraction, optional_path
from vemo.data.benchmarks.files import ClassNames, existing_file, read_class_index, read_label_table, split_labels
from vemo.data.benchmarks.problems import BEFORE_SPLITTING, Tally
from vemo.data.benchmarks.protocols import labelled_from_lists, read_lists, stratified_pick
from vemo.data.benchmarks.store_ids import StoreIds, class_folder
from vemo.errors import ConfigError, DataError

VE8_CLASSES = ["anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust"]
ID_COLUMNS = ("id", "video_id", "video", "path", "file")
LABEL_COLUMNS = ("label", "labels", "class", "emotion")


def numbered_lists(folder: Path) -> dict[int, tuple[Path, Path]]:
    """{k: (trainlistNN.txt, testlistNN.txt)} of a lists folder; a train list without its test list is refused."""
    found = {}
    for train in sorted(folder.glob("trainlist*.txt")):
        number = re.fullmatch(r"trainlist0*(\d+)\.txt", train.name)
        if number is None:
            continue
        k = int(number.group(1))
        tests = [t for t in folder.glob("testlist*.txt") if re.fullmatch(rf"testlist0*{k}\.txt", t.name)]
        if len(tests) != 1:
            raise DataError(f"{train} has no matching test list (testlist{k:02d}.txt) in {folder}")
        found[k] = (train, tests[0])
    return found


class VideoEmotion8(BenchmarkAdapter):
    name = "ve8"

    def __init__(self, store: str | Path, split: int = 1, lists: str | Path | None = None,
                 class_index: str | Path | None = None, labels_file: str | Path | None = None,
                 num_splits: int = 10, test_fraction: float = 1 / 3, val_fraction: float = 0.1,
                 split_seed: int = 0, **common: Any):
        super().__init__(store, **common)
        self.lists = optional_path(lists, "data.lists")
        self.labels_file = optional_path(labels_file, "data.labels_file")
        if self.lists is not None and self.labels_file is not None:
            raise ConfigError("data.lists and data.labels_file are both given: the official lists carry the labels; "
                              "give one of them")
        if not isinstance(num_splits, int) or isinstance(num_splits, bool) or num_splits < 1:
            raise ConfigError(f"data.num_splits must be a positive integer, got {num_splits!r}")
        if self.lists is not None:
            if not self.lists.is_dir():
                raise ConfigError(f"data.lists={lists}: no such folder")
            self.pairs = numbered_lists(self.lists)
            if not self.pairs:
                raise ConfigError(f"data.lists={lists}: the folder has no trainlistNN.txt files")
            self.class_index = existing_file(optional_path(class_index, "data.class_index")
                                             or self.lists / "classInd.txt", "data.class_index")
            numbers = sorted(self.pairs)
        else:
            if self.labels_file is not None:
                existing_file(self.labels_file, "data.labels_file")
            self.pairs, self.class_index, numbers = {}, None, list(range(1, num_splits + 1))
        if not isinstance(split, int) or isinstance(split, bool) or split not in numbers:
            where = (f"the lists in {self.lists} are numbered {numbers[0]}..{numbers[-1]}" if self.lists
                     else f"data.num_splits={num_splits}")
            raise ConfigError(f"data.split must be one of {numbers[0]}..{numbers[-1]} (splits count from 1, like "
                              f"trainlist01.txt; {where}), got {split!r}")
        self.split, self.num_splits = split, num_splits
        self.test_fraction = fraction(test_fraction, "data.test_fraction", low_open=True)
        self.val_fraction = fraction(val_fraction, "data.val_fraction", low_open=True)
        self.split_seed = check_split_seed(split_seed)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"split": self.split, "val_fraction": self.val_fraction, "split_seed": self.split_seed}
        if self.lists is not None:
            train, test = self.pairs[self.split]
            return {**out, "class_index": str(self.class_index), "train_list": str(train), "test_list": str(test)}
        return {**out, "labels_file": str(self.labels_file) if self.labels_file else None,
                "num_splits": self.num_splits, "test_fraction": self.test_fraction}

    def tag(self) -> str:
        return f"split{self.split:02d}-seed{self.split_seed}"

    def build(self, store: StoreIds, tally: Tally) -> Built:
        if self.lists is not None:
            return self._from_lists(store, tally)
        classes = ClassNames(VE8_CLASSES)
        if self.labels_file is not None:
            labelled, matched = self._from_labels_file(store, classes, tally)
        else:
            labelled, matched = self._from_folders(store, classes, tally)
        rng = np.random.default_rng([self.split_seed, self.split])
        train, test = stratified_pick(labelled, self.test_fraction, rng)
        kept, val = stratified_pick({v: labelled[v] for v in train}, self.val_fraction, rng)
        notes = []
        unlabelled = len(store.ids - set(labelled)) if self.labels_file is not None else 0
        if unlabelled:
            notes.append(f"{unlabelled} videos of the store have no label in {self.labels_file.name} and are not used")
        return Built(classes.names, {v: [c] for v, c in labelled.items()}, {"train": kept, "val": val, "test": test},
                     f"{matched}; split {self.split} of {self.num_splits} drawn with seed ({self.split_seed}, "
                     f"{self.split})", notes)

    def _from_lists(self, store: StoreIds, tally: Tally) -> Built:
        classes = ClassNames(read_class_index(self.class_index, VE8_CLASSES))
        train_list, test_list = self.pairs[self.split]
        entries = read_lists([("train", train_list), ("test", test_list)], tally)
        form = store.choose_form([e.raw for e in entries], f"{train_list.name} and {test_list.name}",
                                 self.min_label_overlap)
        labelled, _ = labelled_from_lists(entries, classes, store, form, tally)
        train, test = labelled.get("train", {}), labelled.get("test", {})
        kept, val = stratified_pick(train, self.val_fraction, np.random.default_rng([self.split_seed, self.split]))
        labels = {v: [c] for part in (train, test) for v, c in part.items()}
        notes = []
        unlisted = len(store.ids - {store.lookup(e.raw, form)[0] for e in entries})
        if unlisted:
            notes.append(f"{unlisted} videos of the store are in neither list of split {self.split} and are not used")
        return Built(classes.names, labels, {"train": kept, "val": val, "test": sorted(test)},
                     f"official split {self.split}; list ids matched to store ids {form.name}", notes)

    def _from_labels_file(self, store: StoreIds, classes: ClassNames, tally: Tally) -> tuple[dict[str, str], str]:
        path = self.labels_file
        id_columns, label_column, rows = read_label_table(path, ID_COLUMNS, LABEL_COLUMNS)
        id_column = id_columns[0]
        parsed = []
        for number, row, raw in rows:
            if row is None or not row.get(id_column):
                tally.skip("unparsable", BEFORE_SPLITTING, path, number, raw, "wrong number of columns or no id")
                continue
            parsed.append((number, row[id_column], split_labels(row.get(label_column, ""))))
        form = store.choose_form([vid for _, vid, _ in parsed], path.name, self.min_label_overlap)
        labelled: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for number, raw, names in parsed:
            if not names:
                tally.skip("empty_label", BEFORE_SPLITTING, path, number, raw)
                continue
            if len(names) > 1:
                tally.skip("unparsable", BEFORE_SPLITTING, path, number, raw,
                           f"{len(names)} labels ({', '.join(names)}) for a single-label dataset")
                continue
            name = classes.find(names[0])
            if name is None:
                tally.skip("unknown_class", BEFORE_SPLITTING, path, number, raw,
                           f"{names[0]!r} is not one of {', '.join(classes.names)}")
                continue
            vid, reason, detail = store.lookup(raw, form)
            if vid is None:
                tally.skip(reason, BEFORE_SPLITTING, path, number, raw, detail)
                continue
            if vid in labelled:
                tally.skip("duplicate", BEFORE_SPLITTING, path, number, raw,
                           f"already labelled at line {first_line[vid]}"
                           + ("" if labelled[vid] == name else f" as {labelled[vid]}"))
                continue
            labelled[vid], first_line[vid] = name, number
        return labelled, f"labels from {path.name}, ids matched to store ids {form.name}"

    def _from_folders(self, store: StoreIds, classes: ClassNames, tally: Tally) -> tuple[dict[str, str], str]:
        labelled = {}
        for vid in sorted(store.ids):
            folder = class_folder(vid)
            name = classes.find(folder) if folder else None
            if name is None:
                reason = "unknown_class" if folder else "no_label"
                detail = (f"folder {folder!r} is not one of {', '.join(classes.names)}" if folder
                          else "the id has no class folder (give data.lists= or data.labels_file=)")
                tally.skip(reason, BEFORE_SPLITTING, store.path, None, vid, detail)
                continue
            labelled[vid] = name
        for vid, why in sorted(store.failed.items()):  # videos of the dataset the store has no features of
            tally.skip("not_in_store", BEFORE_SPLITTING, store.path, None, vid, f"its extraction failed: {why}")
        if not labelled:
            raise DataError(f"data=ve8: no store id of {store.path} names its class folder (e.g. "
                            f"{sorted(store.ids)[0]!r}): give the official lists (data.lists=) or a labels file "
                            "(data.labels_file=)")
        return labelled, "labels from the class folder of each store id"
