"""One labelled video per item: features read from the store and subsampled (the model standardizes).

A DataLoader asks for whole batches (``__getitems__``): the batch is built straight into its padded
arrays, one gather per modality, with the same random draws per video as ``__getitem__`` takes,
so both give the same batch. Per-video slicing, conversion and padding was a tenth of a small
model's training step.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vemo.data.preprocess import prepare_modality, token_positions
from vemo.store import FeatureStore


class LazyGenerator:
    """``np.random.default_rng(entropy)``, made when first drawn from: most videos draw nothing
    (shorter than max_len, no modality dropout), and making a generator costs 12 µs a video."""

    __slots__ = ("_entropy", "_generator")

    def __init__(self, entropy: list[int]):
        self._entropy, self._generator = entropy, None

    def __getattr__(self, name: str) -> Any:
        if self._generator is None:
            self._generator = np.random.default_rng(self._entropy)
        return getattr(self._generator, name)


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

    def _rng(self, index: int, epoch: int) -> np.random.Generator | None:
        return LazyGenerator([self.seed, epoch, index]) if self.train else None

    def _dropped(self, present: list[str], rng: np.random.Generator | None) -> list[str]:
        """The present modalities modality dropout removes from one video (never all of them)."""
        if rng is None or self.modality_dropout <= 0:
            return []
        drop = [m for m in present if rng.random() < self.modality_dropout]
        if len(drop) == len(present) and present:
            drop.remove(present[rng.integers(len(present))])
        return drop

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = self._rng(index, epoch)
        pos = int(self.positions[index])
        features = {}
        for m in self.modalities:
            x = self.store.features(pos, m)
            features[m], _ = prepare_modality(x, x.shape[1], self.max_len.get(m), rng=rng)
        for m in self._dropped([m for m in self.modalities if len(features[m])], rng):
            features[m] = features[m][:0]
        return {"id": self.ids[index], "features": features, "label": self.targets[index]}

    def __getitems__(self, keys: list[int | tuple[int, int]]) -> dict[str, Any]:
        """A whole batch in the batch contract (what ``collate`` makes of ``__getitem__``'s items)."""
        keys = [k if isinstance(k, tuple) else (k, 0) for k in keys]
        index = np.array([int(i) for i, _ in keys], dtype=np.int64)
        positions = self.positions[index]
        spans = {m: self.store.spans(positions, m) for m in self.modalities}
        # which tokens each video keeps, drawing in __getitem__'s order: modality by modality, then dropout
        kept: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        for b, (i, epoch) in enumerate(keys):
            rng = self._rng(int(i), int(epoch))
            for m in self.modalities:
                kept[m].append(token_positions(int(spans[m][2][b]), self.max_len.get(m), rng))
            for m in self._dropped([m for m in self.modalities if len(kept[m][b])], rng):
                kept[m][b] = kept[m][b][:0]
        features, masks = {}, {}
        for m in self.modalities:
            shards, starts, _ = spans[m]
            lengths = np.array([len(k) for k in kept[m]], dtype=np.int64)
            # at least one slot, so a batch where nobody has this modality still has a well-formed shape
            t_max, dim = max(1, int(lengths.max(initial=0))), self.store.modalities[m].dim
            mask = np.arange(t_max) < lengths[:, None]
            slots = np.flatnonzero(mask)  # row-major: video by video, token by token, as rows below
            rows = np.concatenate([starts[b] + k for b, k in enumerate(kept[m])]) if len(slots) else slots
            # torch converts float16 to float32 ten times faster than numpy (same values)
            if len(slots) == mask.size and (shards == shards[0]).all():  # no padding, one shard: no copy in
                x = torch.from_numpy(self.store.gather(int(shards[0]), m, rows)).to(torch.float32)
            else:
                x = torch.zeros(len(keys) * t_max, dim)
                owner = slots // t_max
                for k in np.unique(shards[owner]):
                    sel = shards[owner] == k
                    x.index_copy_(0, torch.from_numpy(slots[sel]),
                                  torch.from_numpy(self.store.gather(int(k), m, rows[sel])).to(torch.float32))
            features[m], masks[m] = x.view(len(keys), t_max, dim), torch.from_numpy(mask)
        labels = torch.from_numpy(np.asarray(self.targets)[index])
        return {"features": features, "masks": masks, "labels": labels, "ids": [self.ids[i] for i in index]}
