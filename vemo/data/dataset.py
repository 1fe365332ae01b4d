"""One labelled video per item: features read from the store, subsampled, standardized."""
from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from vemo.store import FeatureStore


def equidistant_positions(length: int, max_len: int, rng: np.random.Generator | None) -> np.ndarray:
    """``max_len`` positions spread evenly over ``length`` tokens, keeping their order.

    In training (``rng`` given) the grid starts at a random offset inside the first stride, so every
    epoch sees other tokens; otherwise each position sits in the middle of its stride.
    """
    stride = length / max_len
    offset = rng.uniform(0, stride) if rng is not None else stride / 2
    return np.minimum((offset + stride * np.arange(max_len)).astype(np.int64), length - 1)


class FeatureDataset(Dataset):
    """Items are ``{"id", "features": {m: float32[T, D]}, "label"}``; a missing modality has T = 0.

    Keys may be ``(index, epoch)`` pairs (see ``EpochSampler``): training randomness (subsampling
    offsets, modality dropout) is drawn from (seed, epoch, index), so it is the same in any worker,
    on any rank and after a resume.
    """

    def __init__(self, store: FeatureStore, ids: list[str], targets: np.ndarray, modalities: list[str],
                 max_len: dict[str, int], stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 train: bool = False, modality_dropout: float = 0.0, seed: int = 0):
        self.store = store
        self.ids = list(ids)
        self.positions = np.array([store.position(v) for v in self.ids], dtype=np.int64)
        self.targets = targets
        self.modalities = sorted(modalities)
        self.max_len = max_len
        self.stats = stats
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
            limit = self.max_len.get(m)
            if limit and len(x) > limit:
                x = x[equidistant_positions(len(x), limit, rng)]
            x = np.asarray(x, dtype=np.float32)
            if self.stats is not None and len(x):
                mean, std = self.stats[m]
                x = (x - mean) / std
            features[m] = x
        if rng is not None and self.modality_dropout > 0:
            present = [m for m in self.modalities if len(features[m])]
            drop = [m for m in present if rng.random() < self.modality_dropout]
            if len(drop) == len(present) and present:  # always keep at least one modality
                drop.remove(present[rng.integers(len(present))])
            for m in drop:
                features[m] = features[m][:0]
        return {"id": self.ids[index], "features": features, "label": self.targets[index]}
