"""Per-modality standardization statistics, computed on the training split only."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vemo.store import FeatureStore


def compute_stats(store: FeatureStore, positions: np.ndarray, modalities: list[str]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean and std over every real token of the given videos (float64 accumulation)."""
    stats = {}
    for m in modalities:
        dim = store.modalities[m].dim
        total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
        for _, x in store.iter_features(m, positions):
            if len(x):
                x64 = x.astype(np.float64)
                total += x64.sum(0)
                total_sq += (x64 * x64).sum(0)
                count += len(x)
        if count == 0:
            mean, std = np.zeros(dim), np.ones(dim)
        else:
            mean = total / count
            std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
            std = np.where(std < 1e-6, 1.0, std)  # constant dimensions are left unscaled
        stats[m] = (mean.astype(np.float32), std.astype(np.float32))
    return stats


def save_stats(stats: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> None:
    arrays = {}
    for m, (mean, std) in stats.items():
        arrays[f"{m}.mean"], arrays[f"{m}.std"] = mean, std
    np.savez(path, **arrays)


def load_stats(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        names = sorted({k.rsplit(".", 1)[0] for k in z.files})
        return {m: (z[f"{m}.mean"], z[f"{m}.std"]) for m in names}
