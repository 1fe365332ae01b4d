"""MovieNet trailers' ``features.pkl`` -> source videos, plus labels.csv and classes.txt.

The release is one pickle: ``{"samples": {youtube_id: {"features": {key: array}, "label": multi-hot}},
"stats": {...}, "idx_to_label": {index: genre}}`` (the README says ``labels``, the code that wrote it
``label``; both are read). ``stats`` is not imported: training computes its own statistics on the
training split. Labels go beside the store by default, where training looks for them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vemo.data.labels import write_labels as write_label_files
from vemo.errors import DataError
from vemo.io import write_text_if_changed
from vemo.store.importers.features import to_matrix
from vemo.store.importers.vemoclap import feature_dict
from vemo.store.importers.writing import SourceVideo
from vemo.store.safe_pickle import safe_load

SPLIT_NAMES = {"trn": "train", "train": "train", "val": "val", "tst": "test", "test": "test"}


def read_release(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise DataError(f"{path} does not exist (MovieNet's features.pkl)")
    data = safe_load(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("samples"), Mapping):
        found = sorted(map(str, data))[:8] if isinstance(data, Mapping) else type(data).__name__
        raise DataError(f"{path} is not MovieNet's features.pkl: expected a dict with 'samples' "
                        f"(video id -> features and labels), found {found}")
    return data


def class_names(idx_to_label: Any, path: Path) -> list[str]:
    """Class names in index order from ``idx_to_label`` (a dict index -> name, or a list)."""
    if isinstance(idx_to_label, (list, tuple)):
        return [str(c) for c in idx_to_label]
    if not isinstance(idx_to_label, Mapping) or not idx_to_label:
        raise DataError(f"{path}: 'idx_to_label' should map class indices to names, "
                        f"got {type(idx_to_label).__name__}")
    try:
        by_index = {int(k): str(v) for k, v in idx_to_label.items()}
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'idx_to_label' has keys that are not class indices") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(f"{path}: 'idx_to_label' indices are not 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def movienet_videos(src: Path) -> tuple[list[SourceVideo], dict[str, Any], Mapping[str, Any]]:
    """(videos, notes for the manifest, the loaded release) of a features.pkl."""
    data = read_release(src)
    videos = []
    for key, sample in data["samples"].items():
        where = f"{src}[{str(key)!r}]"
        videos.append(SourceVideo(id=str(key), source=where,
                                  load=lambda s=sample, w=where: feature_dict(s, w)))
    return videos, {"layout": "features.pkl", "keys": sorted(map(str, data))}, data


def multi_hot_labels(data: Mapping[str, Any], classes: list[str], path: Path
                     ) -> tuple[dict[str, list[str]], list[str]]:
    """(video id -> class names, problems) from each sample's multi-hot ``label``/``labels``."""
    labels, problems = {}, []
    for key, sample in data["samples"].items():
        value = sample.get("labels", sample.get("label")) if isinstance(sample, Mapping) else None
        if value is None:
            problems.append(f"{path}[{str(key)!r}]: no label")
            continue
        try:
            hot = to_matrix(value, len(classes))
        except ValueError as e:
            problems.append(f"{path}[{str(key)!r}]: label {e} (one entry per class)")
            continue
        row = np.zeros(len(classes)) if hot is None else hot[0]
        labels[str(key)] = [c for c, v in zip(classes, row) if v > 0.5]
    return labels, problems


def write_labels(data: Mapping[str, Any], src: Path, folder: Path, splits: Path | None
                 ) -> tuple[list[str], list[str]]:
    """Write labels.csv and classes.txt (and splits/ from a splits.json) into ``folder``;
    returns (files written, problems)."""
    if "idx_to_label" not in data:
        return [], [f"{src}: no 'idx_to_label', so no labels were written"]
    classes = class_names(data["idx_to_label"], src)
    labels, problems = multi_hot_labels(data, classes, src)
    try:
        written = write_label_files(folder, labels, classes, multilabel=True, refuse_other=True)
        if splits is not None:
            written += _write_splits(splits, folder / "splits")
    except DataError as e:
        raise DataError(f"{e} (labels=DIR chooses another folder)") from None
    return [str(p) for p in written], problems


def _write_splits(path: Path, folder: Path) -> list[Path]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"splits file {path} is not readable JSON: {e}") from None
    chosen = {SPLIT_NAMES[k]: v for k, v in data.items() if k in SPLIT_NAMES} if isinstance(data, dict) else {}
    if not chosen or not all(isinstance(v, list) for v in chosen.values()):
        raise DataError(f"{path} should hold lists of video ids under trn/val/tst (or train/val/test)")
    written = []
    for name, ids in sorted(chosen.items()):
        written.append(folder / f"{name}.txt")
        write_text_if_changed(written[-1], "".join(f"{v}\n" for v in ids), refuse_other=True)
    return written
