"""MovieNet trailers: 21 genres, several per trailer (multi-label).

Labels come from one of:

- ``labels_file``: a table with an id column (``id``, ``video_id``, ``youtube_id``, ``video``,
  ``trailer_id`` or ``imdb_id``; with several, the one whose ids the store holds; ``id_column``
  picks one) and a genres column (``labels``, ``genres``, ``genre`` or ``label``) whose genres are
  separated by ``|``, ``,`` or ``;`` (a Python-style list ``['Drama', 'War']`` is read too);
- ``features_file``: the released ``features.pkl`` (a dict with ``samples``: per video a multi-hot
  ``labels`` (or ``label``) vector, and ``idx_to_label``: index -> genre), read only through vemo's
  allow-list unpickler.

Split: ``split_file`` (JSON ``{"train": [...], "val": [...], "test": [...]}``, ``trn``/``tst`` read
too, or a folder of train.txt/val.txt/test.txt), else the usable ids sorted and cut in order by
``split_fractions`` (70/10/20: train first, test last).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vemo.data.benchmarks.base import BenchmarkAdapter, Built, optional_path
from vemo.data.benchmarks.files import ClassNames, existing_file, read_label_table, read_split_file, split_labels
from vemo.data.benchmarks.problems import BEFORE_SPLITTING, Tally
from vemo.data.benchmarks.protocols import ordered_split
from vemo.data.benchmarks.store_ids import StoreIds
from vemo.errors import ConfigError, DataError
from vemo.options import check_split_fractions

MOVIENET_GENRES = ["Action", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary", "Drama",
                   "Family", "Fantasy", "History", "Horror", "Music", "Musical", "Mystery", "Romance", "Sci-Fi",
                   "Sport", "Thriller", "War", "Western"]
ID_COLUMNS = ("id", "video_id", "youtube_id", "video", "trailer_id", "imdb_id")
LABEL_COLUMNS = ("labels", "genres", "genre", "label")


class Labelled:
    """A video as a labels source gives it: where, the id as written, its genres (None: unreadable)."""
    __slots__ = ("source", "line", "raw", "names", "problem")

    def __init__(self, source: Path, line: int | None, raw: str, names: list[str] | None, problem: str = ""):
        self.source, self.line, self.raw, self.names, self.problem = source, line, raw, names, problem


class MovieNet(BenchmarkAdapter):
    name = "movienet"
    multilabel = True
    val_option = "data.split_fractions, or the split file's val list"

    def __init__(self, store: str | Path, labels_file: str | Path | None = None,
                 features_file: str | Path | None = None, split_file: str | Path | None = None,
                 split_fractions: Sequence[float] = (0.7, 0.1, 0.2), id_column: str | None = None, **common: Any):
        super().__init__(store, **common)
        self.labels_file = optional_path(labels_file, "data.labels_file")
        self.features_file = optional_path(features_file, "data.features_file")
        if (self.labels_file is None) == (self.features_file is None):
            raise ConfigError("data=movienet needs exactly one of data.labels_file= (a table of ids and genres) and "
                              "data.features_file= (the released features.pkl)"
                              + (", got both" if self.labels_file else ""))
        existing_file(self.labels_file or self.features_file,
                      "data.labels_file" if self.labels_file else "data.features_file")
        self.split_file = optional_path(split_file, "data.split_file")
        if self.split_file is not None and not self.split_file.exists():
            raise ConfigError(f"data.split_file={split_file}: no such file or folder")
        check_split_fractions(list(split_fractions), "data.split_fractions", need_test=False)
        self.split_fractions = [float(x) for x in split_fractions]
        if id_column is not None and (not isinstance(id_column, str) or not id_column.strip()):
            raise ConfigError(f"data.id_column must be a column name or null, got {id_column!r}")
        self.id_column = id_column.strip().casefold() if id_column else None

    def settings(self) -> dict[str, Any]:
        return {"labels_file": str(self.labels_file) if self.labels_file else None,
                "features_file": str(self.features_file) if self.features_file else None,
                "split_file": str(self.split_file) if self.split_file else None,
                "split_fractions": None if self.split_file else self.split_fractions, "id_column": self.id_column}

    def tag(self) -> str:
        return "splitfile" if self.split_file else "ordered"

    # ---------------------------------------------------------------- labels
    def build(self, store: StoreIds, tally: Tally) -> Built:
        if self.labels_file is not None:
            classes, entries = MOVIENET_GENRES, self._read_table(store)
        else:
            classes, entries = self._read_features_file()
        source = (self.labels_file or self.features_file).name
        form = store.choose_form([e.raw for e in entries], source, self.min_label_overlap)
        known = ClassNames(classes)
        labels: dict[str, list[str]] = {}
        where: dict[str, Labelled] = {}
        for e in entries:
            if e.names is None:
                tally.skip("unparsable", BEFORE_SPLITTING, e.source, e.line, e.raw, e.problem)
                continue
            if not e.names:
                tally.skip("empty_label", BEFORE_SPLITTING, e.source, e.line, e.raw, e.problem)
                continue
            unknown = [n for n in e.names if known.find(n) is None]
            if unknown:
                tally.skip("unknown_class", BEFORE_SPLITTING, e.source, e.line, e.raw,
                           f"{', '.join(map(repr, unknown))} not among the {len(classes)} genres")
                continue
            vid, reason, detail = store.lookup(e.raw, form)
            if vid is None:
                tally.skip(reason, BEFORE_SPLITTING, e.source, e.line, e.raw, detail)
                continue
            if vid in labels:
                first = where[vid]
                tally.skip("duplicate", BEFORE_SPLITTING, e.source, e.line, e.raw,
                           f"already labelled at {first.source.name}" + (f":{first.line}" if first.line else ""))
                continue
            names = {known.find(n) for n in e.names}
            labels[vid] = [c for c in classes if c in names]
            where[vid] = e
        matched = f"labels from {source}, ids matched to store ids {form.name}"
        notes = []
        if self.split_file is not None:
            splits = self._listed_splits(store, labels, tally)
            matched += f"; split from {self.split_file.name}"
            unlisted = len(set(labels) - {v for ids in splits.values() for v in ids})
            if unlisted:
                notes.append(f"{unlisted} labelled videos are in no split of {self.split_file.name} and are not used")
        else:
            splits = ordered_split(list(labels), self.split_fractions)
            matched += f"; split in id order {self.split_fractions}"
        unlabelled = len(store.ids - set(labels))
        if unlabelled:
            notes.append(f"{unlabelled} videos of the store have no label in {source} and are not used")
        return Built(list(classes), labels, splits, matched, notes)

    def _read_table(self, store: StoreIds) -> list[Labelled]:
        path = self.labels_file
        id_columns, label_column, rows = read_label_table(path, ID_COLUMNS + ((self.id_column,) if self.id_column
                                                                             else ()), LABEL_COLUMNS)
        if self.id_column is not None:
            if self.id_column not in id_columns:
                raise ConfigError(f"data.id_column={self.id_column}: {path} has no such column")
            column = self.id_column
        else:  # several id columns (imdb_id, youtube_id): the one whose ids the store holds
            found = {c: max(store.found_per_form(r[c] for _, r, _ in rows if r and r.get(c))) for c in id_columns}
            column = max(id_columns, key=lambda c: (found[c], -id_columns.index(c)))
        out = []
        for number, row, raw in rows:
            if row is None or not row.get(column):
                out.append(Labelled(path, number, raw, None, "wrong number of columns or no id"))
                continue
            names = split_labels(row.get(label_column, ""))
            out.append(Labelled(path, number, row[column], names))
        return out

    def _read_features_file(self) -> tuple[list[str], list[Labelled]]:
        from vemo.store.safe_pickle import safe_load  # only this reader touches pickles

        path = self.features_file
        data = safe_load(path)
        if not isinstance(data, dict) or not isinstance(data.get("samples"), dict) or "idx_to_label" not in data:
            raise DataError(f"{path}: expected a dict with 'samples' (per video) and 'idx_to_label' (index -> genre), "
                            f"got {type(data).__name__}" + (f" with keys {sorted(map(str, data))[:6]}"
                                                            if isinstance(data, dict) else ""))
        classes = self._classes_of(data["idx_to_label"], path)
        out = []
        for key, sample in data["samples"].items():
            raw = str(key)
            vector = sample.get("labels", sample.get("label")) if isinstance(sample, dict) else None
            if vector is None:
                out.append(Labelled(path, None, raw, None, "the sample has no 'labels' vector"))
                continue
            values = np.asarray(vector, dtype=float).reshape(-1) if np.ndim(vector) <= 1 else None
            if values is None or values.size != len(classes) or not np.isin(values, (0.0, 1.0)).all():
                shape = np.shape(vector)
                out.append(Labelled(path, None, raw, None, f"the labels vector (shape {shape}) is not a multi-hot "
                                                             f"vector of the {len(classes)} genres of idx_to_label"))
                continue
            out.append(Labelled(path, None, raw, [classes[i] for i in np.flatnonzero(values)],
                                "" if values.any() else "all-zero labels vector"))
        return classes, out

    @staticmethod
    def _classes_of(idx_to_label: Any, path: Path) -> list[str]:
        if isinstance(idx_to_label, (list, tuple)):
            names = list(idx_to_label)
        elif isinstance(idx_to_label, dict):
            try:
                index = {int(k): v for k, v in idx_to_label.items()}
            except (TypeError, ValueError):
                raise DataError(f"{path}: idx_to_label must map indices to genres, got keys "
                                f"{sorted(map(str, idx_to_label))[:5]}") from None
            if sorted(index) != list(range(len(index))):
                raise DataError(f"{path}: idx_to_label must number the genres 0..{len(index) - 1}, got {sorted(index)}")
            names = [index[i] for i in range(len(index))]
        else:
            raise DataError(f"{path}: idx_to_label must be a dict or a list, got {type(idx_to_label).__name__}")
        if not names or not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) != len(names):
            raise DataError(f"{path}: idx_to_label must name each genre once, got {names}")
        return [n.strip() for n in names]

    # ---------------------------------------------------------------- a given split
    def _listed_splits(self, store: StoreIds, labels: dict[str, list[str]], tally: Tally) -> dict[str, list[str]]:
        listed = read_split_file(self.split_file, "data.split_file")
        form = store.choose_form([raw for ids in listed.values() for _, _, raw in ids], self.split_file.name,
                                 self.min_label_overlap)
        out: dict[str, list[str]] = {name: [] for name in listed}
        seen: dict[str, str] = {}
        for name, ids in listed.items():
            for source, line, raw in ids:
                vid, reason, detail = store.lookup(raw, form)
                if vid is None:
                    tally.skip(reason, name, source, line, raw, detail)
                elif vid in seen:
                    tally.skip("duplicate", name, source, line, raw, f"already in {seen[vid]}")
                elif vid not in labels:
                    seen[vid] = name
                    tally.skip("no_label", name, source, line, raw,
                               f"no usable label in {(self.labels_file or self.features_file).name}")
                else:
                    seen[vid] = name
                    out[name].append(vid)
        return {name: sorted(ids) for name, ids in out.items()}
