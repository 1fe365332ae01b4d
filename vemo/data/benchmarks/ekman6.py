"""Ekman-6: six basic emotions, the official train/test lists, validation carved from train.

Files: ``classInd.txt`` (``1 anger``), ``trainlist01.txt`` and ``testlist01.txt`` (``anger/1000 1``),
given one by one or as the folder ``lists`` that holds them; optionally a blacklist of mislabelled
videos, left out of train, test or both. The validation split is ``val_fraction`` of each class of
the train list, drawn with ``split_seed``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vemo.data.benchmarks.base import BenchmarkAdapter, Built, check_split_seed, fraction, optional_path
from vemo.data.benchmarks.files import ClassNames, existing_file, read_blacklist, read_class_index
from vemo.data.benchmarks.problems import Tally
from vemo.data.benchmarks.protocols import labelled_from_lists, read_lists, stratified_pick
from vemo.data.benchmarks.store_ids import StoreIds
from vemo.errors import ConfigError

EKMAN6_CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
BLACKLIST_FROM = {"both": ("train", "test"), "train": ("train",), "test": ("test",)}


def list_file(value: Any, folder: Path | None, default_name: str, option: str) -> Path:
    """An official file given on its own (``option``) or by name inside the ``lists`` folder."""
    path = optional_path(value, option)
    if path is None and folder is not None:
        path = folder / default_name
    if path is None:
        raise ConfigError(f"{option} is required: give the file, or data.lists=<folder holding {default_name}>")
    return existing_file(path, option)


class Ekman6(BenchmarkAdapter):
    name = "ekman6"

    def __init__(self, store: str | Path, lists: str | Path | None = None, class_index: str | Path | None = None,
                 train_list: str | Path | None = None, test_list: str | Path | None = None,
                 blacklist: str | Path | None = None, blacklist_from: str = "both", val_fraction: float = 0.1,
                 split_seed: int = 0, **common: Any):
        super().__init__(store, **common)
        folder = optional_path(lists, "data.lists")
        if folder is not None and not folder.is_dir():
            raise ConfigError(f"data.lists={lists}: no such folder")
        self.class_index = list_file(class_index, folder, "classInd.txt", "data.class_index")
        self.train_list = list_file(train_list, folder, "trainlist01.txt", "data.train_list")
        self.test_list = list_file(test_list, folder, "testlist01.txt", "data.test_list")
        self.blacklist = existing_file(optional_path(blacklist, "data.blacklist"), "data.blacklist") if blacklist else None
        if blacklist_from not in BLACKLIST_FROM:
            raise ConfigError(f"data.blacklist_from must be both, train or test, got {blacklist_from!r}")
        self.blacklist_from = blacklist_from
        self.val_fraction = fraction(val_fraction, "data.val_fraction", low_open=True)
        self.split_seed = check_split_seed(split_seed)

    def settings(self) -> dict[str, Any]:
        return {"class_index": str(self.class_index), "train_list": str(self.train_list),
                "test_list": str(self.test_list), "blacklist": str(self.blacklist) if self.blacklist else None,
                "blacklist_from": self.blacklist_from, "val_fraction": self.val_fraction,
                "split_seed": self.split_seed}

    def tag(self) -> str:
        return f"seed{self.split_seed}"

    def build(self, store: StoreIds, tally: Tally) -> Built:
        classes = ClassNames(read_class_index(self.class_index, EKMAN6_CLASSES))
        entries = read_lists([("train", self.train_list), ("test", self.test_list)], tally)
        form = store.choose_form([e.raw for e in entries], f"{self.train_list.name} and {self.test_list.name}",
                                 self.min_label_overlap)
        blacklist = {}
        if self.blacklist is not None:
            for number, entry in read_blacklist(self.blacklist):
                blacklist.setdefault(entry, (self.blacklist.name, number))
        labelled, used_blacklist = labelled_from_lists(entries, classes, store, form, tally, blacklist,
                                                       BLACKLIST_FROM[self.blacklist_from])
        train = labelled.get("train", {})
        test = labelled.get("test", {})
        kept, val = stratified_pick(train, self.val_fraction, np.random.default_rng(self.split_seed))
        labels = {vid: [name] for part in (train, test) for vid, name in part.items()}
        notes = []
        unused = sorted(set(blacklist) - used_blacklist)
        if unused:
            notes.append(f"{len(unused)} of the {len(blacklist)} blacklist entries match no listed video in "
                         f"{' or '.join(BLACKLIST_FROM[self.blacklist_from])} (e.g. {', '.join(unused[:3])})")
        unlisted = len(store.ids - {store.lookup(e.raw, form)[0] for e in entries})
        if unlisted:
            notes.append(f"{unlisted} videos of the store are in neither list and are not used")
        return Built(classes.names, labels, {"train": kept, "val": val, "test": sorted(test)},
                     f"list ids matched to store ids {form.name}", notes)
