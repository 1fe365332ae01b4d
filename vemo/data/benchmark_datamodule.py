"""``data=ekman6|ve8|movienet``: run a benchmark's adapter, then read what it wrote.

``BenchmarkDataModule`` takes the adapter's options and ``FeatureDataModule``'s in one flat config
(an option both know, such as ``split_seed`` or ``min_label_overlap``, goes to both). The adapter
runs in ``prepare_data`` and, if that did not run in this process, in ``setup``: every DDP rank may
run it, because its files are written atomically and only when their content changes, and all ranks
write the same content; only rank 0 prints the summary.
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from vemo.data.datamodule import FeatureDataModule
from vemo.data.benchmarks import get
from vemo.data.benchmarks.base import BenchmarkAdapter, Prepared
from vemo.errors import ConfigError

log = logging.getLogger("vemo.data.benchmarks")

# FeatureDataModule options the adapter's output decides
WRITTEN = ("labels", "classes", "splits")


def _parameters(fn) -> list[str]:
    return [name for name, p in inspect.signature(fn).parameters.items()
            if name not in ("self", "store") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def adapter_options(adapter: type[BenchmarkAdapter]) -> list[str]:
    """An adapter's own options and the ones every adapter takes (out, on_bad, min_label_overlap)."""
    return list(dict.fromkeys(_parameters(adapter.__init__) + _parameters(BenchmarkAdapter.__init__)))


def loader_options() -> list[str]:
    return [name for name in _parameters(FeatureDataModule.__init__) if name not in WRITTEN]


def announce(prepared: Prepared) -> None:
    """To the log when the command set one up (console and train.log; skipped items as warnings),
    else to stdout."""
    logged = bool(logging.getLogger().handlers) and log.isEnabledFor(logging.INFO)
    for line in prepared.lines:
        if logged:
            log.log(logging.WARNING if line in prepared.loud else logging.INFO, line)
        else:
            print(line, flush=True)


def is_rank_zero() -> bool:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    return getattr(rank_zero_only, "rank", 0) == 0


class BenchmarkDataModule(FeatureDataModule):
    """A FeatureDataModule over the layout that adapter ``dataset`` writes from the official files.

    Args:
        dataset: a registered adapter (``vemo.data.benchmarks.names()``).
        store: the feature store of the benchmark's videos.
        **options: the adapter's options (its files, ``out``, ``on_bad``, split settings) and
            FeatureDataModule's (modalities, max_len, batch sizes, ...); ``labels``, ``classes``
            and ``splits`` are what the adapter writes, so they are not options here.
    """

    def __init__(self, dataset: str, store: str | Path, **options: Any):
        adapter_cls = get(dataset)
        own, loader = adapter_options(adapter_cls), loader_options()
        unknown = sorted(set(options) - set(own) - set(loader))
        if unknown:
            written = [k for k in unknown if k in WRITTEN]
            why = (f"data={dataset} writes {', '.join(written)} itself (data.out= chooses where)" if written
                   else f"data={dataset} has no such option")
            raise ConfigError(f"data.{unknown[0]}: {why}; its options: {', '.join(own)}; and the loader's: "
                              f"{', '.join(loader)}")
        self.adapter = adapter_cls(store=store, **{k: v for k, v in options.items() if k in own})
        out = self.adapter.out
        super().__init__(store=store, labels=out / "labels.csv", classes=out / "classes.txt", splits=out / "splits",
                         **{k: v for k, v in options.items() if k in loader})
        self.dataset = dataset
        self.prepared: Prepared | None = None

    def prepare_data(self) -> None:
        if self.prepared is None:
            self.prepared = self.adapter.prepare(announce=None)
            if is_rank_zero():
                announce(self.prepared)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # a rank that did not prepare writes the same files (atomically) or nothing
        super().setup(stage)
        self.split_source = {**self.split_source, "dataset": {"name": self.dataset, **self.adapter.settings()}}
