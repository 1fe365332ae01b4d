"""``data=demo``: the FeatureDataModule over the built-in synthetic dataset, generated on first use."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vemo.data.datamodule import FeatureDataModule
from vemo.demo.features import demo_dir, ensure_demo


class DemoDataModule(FeatureDataModule):
    def __init__(self, cache_dir: str | Path = "~/.cache/vemo", num_videos: int = 1600,
                 demo_seed: int = 0, **kwargs: Any):
        root = demo_dir(cache_dir, num_videos, demo_seed)
        super().__init__(store=root / "store", labels=root / "labels.csv", **kwargs)
        self.cache_dir, self.num_videos, self.demo_seed = cache_dir, num_videos, demo_seed

    def prepare_data(self) -> None:
        ensure_demo(self.cache_dir, self.num_videos, self.demo_seed)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # cheap when it exists; covers use without a Trainer
        super().setup(stage)
