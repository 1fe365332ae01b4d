"""Benchmark dataset adapters: the files a benchmark is published with -> vemo's label layout.

Each adapter reads a benchmark's official files (class index, split lists, label tables, the
released features file) against a feature store and writes ``labels.csv``, ``classes.txt`` and
``splits/{train,val,test}.txt`` (plus ``report.json`` and ``skipped.csv``) beside the store, which
``FeatureDataModule`` then reads. ``data=ekman6``, ``data=ve8`` and ``data=movienet`` run one
through ``vemo.data.BenchmarkDataModule``.

    vemo.data.benchmarks.names()                                   # ['ekman6', 'movienet', 've8']
    vemo.data.benchmarks.prepare("ekman6", store="data/ekman6/store", lists="data/ekman6/lists")
    vemo.data.benchmarks.get("ve8")                                # the adapter class
"""
from __future__ import annotations

from typing import Any

from vemo.data.benchmarks.base import BenchmarkAdapter, Prepared
from vemo.registry import Registry

DATASETS: Registry[BenchmarkAdapter] = Registry("dataset", builtins={
    "ekman6": "vemo.data.benchmarks.ekman6:Ekman6",
    "ve8": "vemo.data.benchmarks.ve8:VideoEmotion8",
    "movienet": "vemo.data.benchmarks.movienet:MovieNet",
})
register = DATASETS.register

__all__ = ["DATASETS", "BenchmarkAdapter", "Prepared", "get", "names", "prepare", "register"]


def names() -> list[str]:
    return DATASETS.names()


def get(name: str) -> type[BenchmarkAdapter]:
    """The adapter class registered as ``name``; an unknown name lists the valid ones."""
    return DATASETS.get(name)


def prepare(name: str, **options: Any) -> Prepared:
    """Run adapter ``name`` with ``options`` (``store=`` and its own) and write the layout."""
    return DATASETS.create(name, **options).prepare()

