"""The one preprocessing rule that training and prediction share.

A video's features for one modality are ``[T, D]``; before they reach the model, sequences longer
than ``max_len`` are cut down to ``max_len`` equidistant tokens (order kept), and values are rounded
to the store's dtype (what training read from disk). Standardization is not done here: the model
holds the training split's statistics as buffers and applies them itself, so a checkpoint takes
raw features.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

# recorded in checkpoints, so a later vemo that changes the rule can tell old models apart
SUBSAMPLE_RULE = "equidistant"


def equidistant_positions(length: int, max_len: int, rng: np.random.Generator | None) -> np.ndarray:
    """``max_len`` positions spread evenly over ``length`` tokens, keeping their order.

    In training (``rng`` given) the grid starts at a random offset inside the first stride, so every
    epoch sees other tokens; otherwise each position sits in the middle of its stride.
    """
    stride = length / max_len
    offset = rng.uniform(0, stride) if rng is not None else stride / 2
    return np.minimum((offset + stride * np.arange(max_len)).astype(np.int64), length - 1)


def token_positions(length: int, limit: int | None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Which of ``length`` tokens the model sees under the cap ``limit`` (0/None: all of them)."""
    if limit and length > limit:
        return equidistant_positions(length, int(limit), rng)
    return np.arange(length, dtype=np.int64)


def prepare_modality(x: np.ndarray | None, dim: int, limit: int | None, dtype: str | None = None,
                     rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One modality's ``[T, D]`` features -> (float32 ``[T', D]`` the model reads, kept positions).

    ``None`` (an absent signal) becomes zero tokens. ``dtype`` rounds freshly extracted values the
    way the store does, so a prediction sees exactly what training saw.
    """
    if x is None or len(x) == 0:
        return np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected features of shape [T, {dim}], got {tuple(x.shape)}")
    keep = token_positions(len(x), limit, rng)
    if len(keep) != len(x):
        x = x[keep]
    if dtype is not None and x.dtype != np.dtype(dtype):
        x = x.astype(dtype)
    return np.asarray(x, dtype=np.float32), keep


def prepare_features(features: Mapping[str, np.ndarray | None], dims: Mapping[str, int],
                     max_len: Mapping[str, int], dtypes: Mapping[str, str] | None = None,
                     rng: np.random.Generator | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every modality of ``dims`` (sorted): features the model reads and the token positions kept."""
    out, kept = {}, {}
    for m in sorted(dims):
        out[m], kept[m] = prepare_modality(features.get(m), int(dims[m]), max_len.get(m),
                                           (dtypes or {}).get(m), rng)
    return out, kept
