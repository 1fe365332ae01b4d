"""One labelled video per item: features read from the store and subsampled (the model standardizes)."""
from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from vemo.data.preprocess import prepare_modality
from vemo.store import FeatureStore


class FeatureDataset(Dataset):
    """Items are ``{"id", "features": {m: float32[T, D]}, "label"}``; a missing modality has T = 0.

    Keys may be ``(index, epoch)`` pairs (see ``EpochSampler``): training randomness (subsampling
    offsets, modality dropout) is drawn from (seed, epoch, index), so it is the same in any worker,
    on any rank and after a resume.
    """

    def __init__(self, store: FeatureStore, ids: list[str], targets: np.ndarray, modalities: list[str],
                 max_len: dict[str, int], train: bool = False, modality_dropout: float = 0.0, seed: int = 0):
        self.store = store
        self.ids = list(ids)
        self.positions = np.array([store.position(v) for v in self.ids], dtype=np.int64)
        self.targets = targets
        self.modalities = sorted(modalities)
        self.max_len = max_len
        self.train = train
        self.modality_dropout = float(modality_dropout)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng([self.seed, epoch, index]) if self.train else None
        pos = int(self.positions[index])
        features = {}
        for m in self.modalities:
            x = self.store.features(pos, m)
            features[m], _ = prepare_modality(x, x.shape[1], self.max_len.get(m), rng=rng)
        if rng is not None and self.modality_dropout > 0:
            present = [m for m in self.modalities if len(features[m])]
            drop = [m for m in present if rng.random() < self.modality_dropout]
            if len(drop) == len(present) and present:  # always keep at least one modality
                drop.remove(present[rng.integers(len(present))])
            for m in drop:
                features[m] = features[m][:0]
        return {"id": self.ids[index], "features": features, "label": self.targets[index]}
