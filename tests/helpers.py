"""Helpers shared by the test modules: tiny feature stores, label files, training overrides."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

import lightning as L
import numpy as np

from vemo.store import FeatureStoreWriter, ModalitySpec


class InterruptAt(L.Callback):
    """Simulates Ctrl-C at the start of training epoch ``epoch`` (after ``epoch`` epochs finished)."""

    def __init__(self, epoch: int):
        self.epoch = int(epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt(f"test interrupt at the start of epoch {self.epoch}")


def write_store(root: Path, specs: Mapping[str, ModalitySpec], videos: Mapping[str, Mapping[str, np.ndarray | None]],
                shard_size: int = 512, failures: Mapping[str, str] | None = None,
                side: Mapping[str, object] | None = None) -> Path:
    """Write ``videos`` ({id: {modality: [T, D] or None}}) to a new store at ``root``."""
    with FeatureStoreWriter(root, specs, shard_size=shard_size) as w:
        for vid, feats in videos.items():
            w.add(vid, feats, source=f"test://{vid}", side=(side or {}).get(vid))
        for vid, reason in (failures or {}).items():
            w.add_failure(vid, reason)
    return root


def write_labels(path: Path, labels: Mapping[str, str | Iterable[str]], multilabel: bool = False) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "labels" if multilabel else "label"])
        for vid, lab in labels.items():
            w.writerow([vid, "|".join(lab) if multilabel else lab])
    return path


def shard_dirs(store_root: Path) -> list[Path]:
    return sorted(d for d in (store_root / "shards").iterdir() if d.is_dir())


def shard_of(store_root: Path, video_id: str) -> tuple[Path, int]:
    """The shard folder and row holding ``video_id``, read from index.json."""
    for rec in json.loads((store_root / "index.json").read_text())["videos"]:
        if rec["id"] == video_id:
            return store_root / "shards" / rec["shard"], int(rec["row"])
    raise KeyError(video_id)


def poison(store_root: Path, video_id: str, modality: str, token: int = 0, value: float = np.nan) -> None:
    """Overwrite one stored token of a video in place, as a tool other than vemo's writer might."""
    shard, row = shard_of(store_root, video_id)
    offsets = np.load(shard / f"{modality}.offsets.npy")
    data = np.load(shard / f"{modality}.data.npy", mmap_mode="r+")
    assert offsets[row + 1] > offsets[row] + token, "the video has no such token"
    data[offsets[row] + token, 0] = value
    data.flush()
    del data


# A demo run that learns in a few seconds on two CPU cores (measured: test/acc about 0.5, chance 1/6).
SMALL_RUN = ("data.num_videos=480", "trainer.max_epochs=4", "fusion=gated", "model.d_model=32",
             "model.classifier_hidden=64", "fusion.hidden=64", "model.lr=3e-3", "data.batch_size=32")


def train_overrides(run_dir: Path, cache_dir: Path, *extra: str, logger: str | None = "csv",
                    plots: bool = False) -> list[str]:
    """Overrides for a quick, quiet CPU training run on the demo data (``logger=None``: the default;
    ``plots``: also draw the run's PNGs, about a second, for the tests that look at them)."""
    return [f"run_dir={run_dir}", f"paths.cache_dir={cache_dir}", "trainer.accelerator=cpu",
            "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
            "callbacks.progress_bar=null", f"plots={str(plots).lower()}",
            *([f"logger={logger}"] if logger else []), *extra]


FORCED_WARNINGS = Path(__file__).parent / "forced_warnings"
FORCED_MARK = "forced by the test"


def with_forced_warnings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a subprocess into which a warning and a log line are forced (at logging set-up and
    at exit; see forced_warnings/sitecustomize.py): its stdout must still be its document alone."""
    paths = [str(FORCED_WARNINGS), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


def assert_warnings_were_forced(stderr: str) -> None:
    """Both forced warnings and both forced log lines reached stderr (so the test really forced them)."""
    for line in ("a warning forced by the test after logging was configured", "a warning forced by the test at exit",
                 "a log line forced by the test after logging was configured", "a log line forced by the test at exit"):
        assert line in stderr, f"{line!r} not on stderr:\n{stderr[-2000:]}"
