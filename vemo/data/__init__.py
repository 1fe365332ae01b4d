"""Everything between the feature store and a batch: labels, splits, normalization, loaders.

The DataModule imports Lightning, which takes seconds; it is loaded on first use so that the
label/split helpers start fast.
"""
from __future__ import annotations

from vemo.errors import ModalityError
from vemo.lazy import lazy_exports

_LAZY = {
    "FeatureDataModule": "vemo.data.datamodule",
    "BenchmarkDataModule": "vemo.data.benchmark_datamodule",
    "LabelError": "vemo.data.labels",
    "Labels": "vemo.data.labels",
    "read_labels": "vemo.data.labels",
}

# the batch collate function is vemo.data.collate.collate (its module shares the name, so the package
# does not re-export it: the attribute would flip between function and module with import order)
__all__ = ["BenchmarkDataModule", "FeatureDataModule", "LabelError", "Labels", "ModalityError", "read_labels"]


__getattr__ = lazy_exports(__name__, _LAZY)
