"""The forward pass: feature dicts -> the model's batch (training's preprocessing, padded and
masked) -> class probabilities, with no gradient."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from vemo.errors import PredictError


def prepare_batch(items: Sequence[Mapping[str, np.ndarray | None]], modalities: Sequence[str],
                  dims: Mapping[str, int], max_len: Mapping[str, int], dtypes: Mapping[str, str | None],
                  device: Any) -> tuple[dict, dict, list[dict]]:
    """Features, masks (on ``device``) and per item the indices of the tokens kept by the caps."""
    from vemo.data.collate import collate
    from vemo.data.preprocess import prepare_features

    prepared, kept = [], []
    for features in items:
        unknown = sorted(set(features) - set(modalities))
        if unknown:
            raise PredictError(f"features of modalities {unknown} that the model does not use; "
                               f"it was trained on {', '.join(modalities)}")
        try:
            x, k = prepare_features(features, dims, max_len, dtypes)
        except ValueError as e:
            raise PredictError(f"features do not fit the model: {e} (dims: {dims})") from None
        prepared.append({"id": "", "features": x, "label": 0})
        kept.append(k)
    batch = collate(prepared)
    feats = {m: t.to(device) for m, t in batch["features"].items()}
    masks = {m: t.to(device) for m, t in batch["masks"].items()}
    return feats, masks, kept


def probabilities(model: Any, feats: dict, masks: dict) -> np.ndarray:
    """[N, classes]: softmax, or sigmoid for a multi-label model."""
    import torch

    with torch.inference_mode():
        return model.probabilities(model(feats, masks)).float().cpu().numpy()
