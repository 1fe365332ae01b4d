"""FeatureDataModule: a feature store + labels + a split -> padded, masked batches (+ normalization statistics)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from vemo.data.collate import collate
from vemo.data.dataset import FeatureDataset
from vemo.data.labels import Labels, match_labels_to_store, read_labels
from vemo.data.normalization import compute_stats, save_stats
from vemo.data.sampler import EpochSampler
from vemo.data.splits import SPLITS, read_split_dir, restrict_to_available, stratified_split
from vemo.errors import DataError, ModalityError
from vemo.store import FeatureStore
from vemo.options import check_modality_list, number_in


class FeatureDataModule(L.LightningDataModule):
    """Batches from a feature store, following the batch contract (docs/architecture.md).

    Args:
        store: feature store folder.
        labels: ``labels.csv`` (``id,label`` or ``id,labels``); defaults to the one beside the store.
        modalities: names to use; ``None`` means every modality in the store.
        splits: folder with train.txt / val.txt / test.txt; ``None`` draws a stratified split.
        split_fractions, split_seed: the drawn split's train/val/test shares and its seed.
        max_len: cap on tokens per modality (an int for all, or a mapping); longer sequences are
            subsampled to equidistant positions, with random offsets in training. 0 or ``None``
            keeps every token.
        min_label_overlap: refuse when the labels file and the store share fewer videos than this
            share of the smaller of the two (a labels file meant for another store).
        normalize: standardize each modality with mean/std of the training split (computed here,
            applied by the model, which keeps them in its checkpoint).
        modality_dropout: in training, drop each present modality of a video with this probability
            (never all of them).
        seed: seed of shuffling and augmentation; the same seed gives the same batches.
    """

    def __init__(self, store: str | Path, labels: str | Path | None = None,
                 modalities: Sequence[str] | None = None, splits: str | Path | None = None,
                 split_fractions: Sequence[float] = (0.7, 0.1, 0.2), split_seed: int = 0,
                 max_len: int | dict[str, int] = 64, batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int = 0, normalize: bool = True, modality_dropout: float = 0.0,
                 seed: int = 0, pin_memory: bool = False, classes: str | Path | None = None,
                 min_label_overlap: float = 0.5):
        super().__init__()
        check_modality_list(modalities)
        number_in(modality_dropout, "data.modality_dropout", 0.0, 1.0)
        self.store_path = Path(store).expanduser()
        self.labels_path = Path(labels).expanduser() if labels else None
        self.classes_path = Path(classes).expanduser() if classes else None
        self.requested_modalities = list(modalities) if modalities is not None else None
        self.splits_path = Path(splits).expanduser() if splits else None
        self.split_fractions = tuple(split_fractions)
        self.split_seed = split_seed
        self.max_len_arg = max_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.normalize = normalize
        self.modality_dropout = modality_dropout
        self.seed = seed
        self.pin_memory = pin_memory
        self.min_label_overlap = float(min_label_overlap)
        self.stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._ready = False

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        self.store = FeatureStore(self.store_path)
        if not self.store.ids:
            failed = self.store.failed
            why = (f"; all {len(failed)} of its videos failed extraction (e.g. {failed[0]['id']}: "
                   f"{failed[0]['reason']})" if failed else "")
            raise DataError(f"the feature store {self.store_path} holds no videos{why}")
        available = sorted(self.store.modalities)
        mods = self.requested_modalities if self.requested_modalities is not None else available
        absent = [m for m in mods if m not in self.store.modalities]
        if absent:
            raise ModalityError(f"modalit{'y' if len(absent) == 1 else 'ies'} {absent} not in the "
                                f"store {self.store_path}; available: {', '.join(available)}")
        self.modalities = sorted(mods)
        self.max_len = ({m: int(self.max_len_arg) for m in self.modalities}
                        if not isinstance(self.max_len_arg, dict) and self.max_len_arg
                        else {m: int(v) for m, v in dict(self.max_len_arg or {}).items()})

        labels_path = self.labels_path or self.store_path.parent / "labels.csv"
        self.labels: Labels = read_labels(labels_path, self.classes_path)
        usable = match_labels_to_store(set(self.labels.targets), set(self.store.ids), labels_path,
                                       self.store_path, self.min_label_overlap)
        if self.store.failed:
            warnings.warn(f"{len(self.store.failed)} videos failed extraction and are skipped "
                          f"(e.g. {self.store.failed[0]['id']}: {self.store.failed[0]['reason']})")
        usable -= self._videos_with_bad_values(usable)
        if self.splits_path:
            listed = read_split_dir(self.splits_path)
            split = restrict_to_available(listed, usable, str(self.store_path))
            unlisted = usable - {vid for ids in listed.values() for vid in ids}
            if unlisted:
                warnings.warn(f"{len(unlisted)} of {len(usable)} videos with features and labels are in no split "
                              f"file of {self.splits_path} and are not used (e.g. {', '.join(sorted(unlisted)[:3])})")
            self.split_source = {"files": str(self.splits_path.resolve())}
            self._split_origin = {name: f"{self.splits_path / (name + '.txt')} ({len(listed[name])} ids listed, "
                                        f"{len(split[name])} with features and labels)" for name in SPLITS}
        else:
            split = stratified_split(sorted(usable), self.labels, self.split_fractions, self.split_seed)
            self.split_source = {"split_seed": int(self.split_seed),
                                 "split_fractions": [float(x) for x in self.split_fractions]}
            self._split_origin = {name: f"data.split_fractions={list(self.split_fractions)} over {len(usable)} "
                                        f"videos" for name in SPLITS}
        self.split_ids = split
        for name in ("train", "val"):
            if not split[name]:
                raise DataError(f"the {name} split is empty: {self.split_origin(name)}")

        if self.normalize and self.stats is None:  # stats restored from a checkpoint are kept
            train_pos = np.array([self.store.position(v) for v in split["train"]])
            self.stats = compute_stats(self.store, train_pos, self.modalities)
        self.datasets = {
            name: FeatureDataset(self.store, ids, self.labels.target_array(ids), self.modalities,
                                 self.max_len, train=(name == "train"), modality_dropout=self.modality_dropout,
                                 seed=self.seed)
            for name, ids in split.items()
        }
        self._ready = True

    def _videos_with_bad_values(self, candidates: set[str]) -> set[str]:
        """Videos whose features hold NaN/inf (a store written by other tools may have them)."""
        bad: dict[str, list[str]] = {}
        for m in self.modalities:
            for pos in self.store.nonfinite_positions(m):
                bad.setdefault(self.store.ids[pos], []).append(m)
        bad = {v: ms for v, ms in bad.items() if v in candidates}
        if bad:
            examples = "; ".join(f"{v} ({', '.join(ms)})" for v, ms in list(bad.items())[:5])
            warnings.warn(f"{len(bad)} videos have NaN or infinite features and are skipped: {examples}")
        return set(bad)

    # ---------------------------------------------------------------- facts the model needs
    @property
    def classes(self) -> list[str]:
        return self.labels.classes

    @property
    def num_classes(self) -> int:
        return len(self.labels.classes)

    @property
    def multilabel(self) -> bool:
        return self.labels.multilabel

    @property
    def modality_dims(self) -> dict[str, int]:
        return {m: self.store.modalities[m].dim for m in self.modalities}

    @property
    def feature_specs(self) -> dict[str, dict[str, Any]]:
        """The store manifest's entry of each used modality: dim, kind, dtype and the extractor
        settings that made it (a checkpoint keeps them, so prediction extracts the same way)."""
        return {m: self.store.modalities[m].to_json() for m in self.modalities}

    @property
    def extract_profile(self) -> str | None:
        return (self.store.manifest.get("metadata") or {}).get("profile")

    def normalization(self) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """Per-modality (mean, std) of the training split, or None without normalization."""
        return self.stats if self.normalize else None

    def class_counts(self) -> np.ndarray:
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for vid in self.split_ids["train"]:
            counts[self.labels.targets[vid]] += 1
        return counts

    def save_stats(self, path: str | Path) -> None:
        if self.stats is not None:
            save_stats(self.stats, path)

    # ---------------------------------------------------------------- loaders
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        ds = self.datasets[name]
        return DataLoader(
            ds, batch_size=self.batch_size if shuffle else self.eval_batch_size,
            # training pads the last rank's share so DDP ranks step together; evaluation counts each video once
            sampler=EpochSampler(len(ds), shuffle=shuffle, seed=self.seed, pad=shuffle),
            collate_fn=collate, num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            # a private generator: creating loader iterators must not consume the global RNG,
            # or a resumed run would draw different dropout masks than an uninterrupted one
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if not self.split_ids["test"]:  # never stand in with another split: its numbers would be called test
            raise DataError(f"the test split is empty: {self.split_origin('test')}")
        return self._loader("test", shuffle=False)

    def split_origin(self, name: str) -> str:
        """Where split ``name`` came from (the file or the fractions), for messages."""
        return self._split_origin[name]

    # ---------------------------------------------------------------- checkpointed state
    def state_dict(self) -> dict[str, Any]:
        # normalization travels inside checkpoints, so prediction needs nothing but the .ckpt
        return {"modalities": getattr(self, "modalities", None),
                "stats": {m: (torch.from_numpy(mu), torch.from_numpy(sd))
                          for m, (mu, sd) in (self.stats or {}).items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("stats"):
            self.stats = {m: (mu.numpy(), sd.numpy()) for m, (mu, sd) in state["stats"].items()}
