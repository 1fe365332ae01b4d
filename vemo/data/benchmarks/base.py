"""What every benchmark adapter shares: options, the out folder, the skip/fail policy, the report,
and writing vemo's layout (``labels.csv``, ``classes.txt``, ``splits/``) for ``FeatureDataModule``.

An adapter's ``build`` reads the official files and returns the labels and the split of the videos
the store holds, tallying whatever it leaves out; ``prepare`` applies ``on_bad``, writes the
layout with ``report.json`` and ``skipped.csv``, and prints what was used and skipped.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from vemo.data.splits import SPLITS
from vemo.data.benchmarks.layout import write_layout
from vemo.data.benchmarks.problems import Tally, check_on_bad, counts_text
from vemo.data.benchmarks.store_ids import StoreIds
from vemo.errors import ConfigError, DataError
from vemo.options import number_in, seed

SHOWN_SKIPPED = 5  # skipped items printed to the console; skipped.csv lists them all
LAYOUT_FILES = "labels.csv, classes.txt, splits/, report.json, skipped.csv"


@dataclass
class Built:
    """What an adapter made of the official files."""
    classes: list[str]
    labels: dict[str, list[str]]      # store id -> class names
    splits: dict[str, list[str]]      # train/val/test -> store ids
    matched: str                      # how the files' ids were matched to store ids
    notes: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """Where the layout was written and what it holds."""
    dataset: str
    out: Path
    used: dict[str, int]
    skipped: dict[str, dict[str, int]]
    lines: list[str]
    loud: list[str] = field(default_factory=list)   # the lines about skipped items (warnings in a log)

    @property
    def labels(self) -> Path:
        return self.out / "labels.csv"

    @property
    def classes(self) -> Path:
        return self.out / "classes.txt"

    @property
    def splits(self) -> Path:
        return self.out / "splits"

    @property
    def report(self) -> Path:
        return self.out / "report.json"

    @property
    def skipped_file(self) -> Path:
        return self.out / "skipped.csv"


def optional_path(value: Any, option: str) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"{option} must be a path or null, got {value!r}")
    return Path(value).expanduser().absolute()


def fraction(value: Any, option: str, low_open: bool = False) -> float:
    number_in(value, option, 0.0, 1.0, low_open=low_open)
    return float(value)


def check_split_seed(value: Any) -> int:
    seed(value, "data.split_seed")
    return int(value)


class BenchmarkAdapter:
    """Base of the adapters. ``store``: the feature store of the benchmark's videos; ``out``: where
    the layout goes (None: ``<store>/../<name>-labels/<tag>-<settings digest>/``, so runs with other
    settings never share a folder); ``on_bad``: ``skip`` (default: leave bad items out, list them) or
    ``fail``; ``min_label_overlap``: refuse files of which fewer than this share is in the store."""

    name: ClassVar[str] = ""
    multilabel: ClassVar[bool] = False
    val_option: ClassVar[str] = "data.val_fraction"  # what sizes the validation split, for messages

    def __init__(self, store: str | Path, *, out: str | Path | None = None, on_bad: str = "skip",
                 min_label_overlap: float = 0.5):
        if store is None or store == "":
            raise ConfigError("data.store is required: the feature store of the benchmark's videos")
        self.store = Path(store).expanduser().absolute()
        self.out_arg = optional_path(out, "data.out")
        self.on_bad = check_on_bad(on_bad)
        self.min_label_overlap = fraction(min_label_overlap, "data.min_label_overlap")

    # ---------------------------------------------------------------- what subclasses say
    def settings(self) -> dict[str, Any]:
        """The options that decide the written files (paths as absolute strings)."""
        raise NotImplementedError

    def tag(self) -> str:
        """A readable name of the settings, the start of the default out folder's name."""
        raise NotImplementedError

    def build(self, store: StoreIds, tally: Tally) -> Built:
        raise NotImplementedError

    # ---------------------------------------------------------------- shared
    @property
    def out(self) -> Path:
        if self.out_arg is not None:
            return self.out_arg
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:8]
        return self.store.parent / f"{self.name}-labels" / f"{self.tag()}-{digest}"

    def prepare(self, announce: Callable[[str], None] | None = print) -> Prepared:
        """Read the files, apply ``on_bad``, write the layout; ``announce`` gets the summary lines."""
        store = StoreIds(self.store)
        tally = Tally()
        built = self.build(store, tally)
        tally.sort()
        tally.enforce(self.on_bad, self.name)
        used = {name: len(built.splits.get(name, [])) for name in SPLITS}
        skipped = tally.counts()
        if not used["train"]:
            raise DataError(f"data={self.name}: no training video is left in {self.store}"
                            + (f" (skipped: {counts_text(skipped)})" if skipped else ""))
        if not used["val"]:
            raise DataError(f"data={self.name}: the validation split is empty ({used['train']} training videos): "
                            f"give it a share ({self.val_option})")
        out = self.out
        report = {"dataset": self.name, "store": str(self.store), "settings": self.settings(),
                  "on_bad": self.on_bad, "ids": built.matched, "classes": built.classes, "used": used,
                  "skipped": skipped, "skipped_total": len(tally.items), "notes": built.notes,
                  "files": {"labels": "labels.csv", "classes": "classes.txt", "splits": "splits/",
                            "skipped": "skipped.csv"}}
        write_layout(out, built.classes, {v: built.labels[v] for ids in built.splits.values() for v in ids},
                     self.multilabel, built.splits, report, tally.items)
        prepared = self._summary(out, built, used, tally)
        if announce is not None:
            for line in prepared.lines:
                announce(line)
        return prepared

    def _summary(self, out: Path, built: Built, used: dict[str, int], tally: Tally) -> Prepared:
        p = f"{self.name}:"
        lines = [f"{p} {used['train']} train / {used['val']} val / {used['test']} test videos, "
                 f"{len(built.classes)} classes ({built.matched})"]
        loud = []
        if tally.items:
            loud.append(f"{p} skipped {len(tally.items)} (data.on_bad={self.on_bad}): {counts_text(tally.counts())}")
            loud += [f"{p}   {s.describe(short=True)}" for s in tally.items[:SHOWN_SKIPPED]]
            if len(tally.items) > SHOWN_SKIPPED:
                loud.append(f"{p}   ... and {len(tally.items) - SHOWN_SKIPPED} more: all in {out / 'skipped.csv'}")
        lines += loud or [f"{p} skipped none"]
        lines += [f"{p} note: {n}" for n in built.notes]
        lines.append(f"{p} wrote {out} ({LAYOUT_FILES})")
        return Prepared(self.name, out, used, tally.counts(), lines, loud)
