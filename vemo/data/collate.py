"""Pad a list of items into the batch contract: features [B, T, D], masks [B, T] (True = real)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def collate(items: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(items, dict):  # already a batch: a dataset's __getitems__ built it
        return items
    features, masks = {}, {}
    for m in items[0]["features"]:
        seqs = [it["features"][m] for it in items]
        # at least one slot, so a batch where nobody has this modality still has a well-formed shape
        t_max = max(1, max(len(s) for s in seqs))
        dim = seqs[0].shape[1]
        x = np.zeros((len(items), t_max, dim), dtype=np.float32)
        mask = np.zeros((len(items), t_max), dtype=bool)
        for b, s in enumerate(seqs):
            x[b, : len(s)] = s
            mask[b, : len(s)] = True
        features[m], masks[m] = torch.from_numpy(x), torch.from_numpy(mask)
    labels = torch.from_numpy(np.stack([np.asarray(it["label"]) for it in items]))
    return {"features": features, "masks": masks, "labels": labels, "ids": [it["id"] for it in items]}
