"""Valence and arousal from class probabilities, for Ekman-like label sets.

Each basic emotion has a mean position on the circumplex (valence: unpleasant -1 .. pleasant +1,
arousal: calm -1 .. excited +1); a video's readout is the probability-weighted mean of its
classes' positions.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# mean (valence, arousal) per basic emotion
CLASS_AFFECT = {"anger": (-0.51, 0.59), "disgust": (-0.60, 0.35), "fear": (-0.64, 0.60),
                "joy": (0.76, 0.48), "sadness": (-0.63, -0.27), "surprise": (0.40, 0.67),
                "neutral": (0.0, 0.0)}
SYNONYMS = {"angry": "anger", "disgusted": "disgust", "fearful": "fear", "afraid": "fear",
            "happy": "joy", "happiness": "joy", "sad": "sadness", "surprised": "surprise"}
MIN_BASIC = 4  # a label set needs at least this many basic emotions to count as Ekman-like


def class_positions(classes: Sequence[str]) -> np.ndarray | None:
    """[C, 2] (valence, arousal) per class, or None when the label set is not Ekman-like
    (a class without a known position, or fewer than four basic emotions)."""
    names = [SYNONYMS.get(c.strip().lower(), c.strip().lower()) for c in classes]
    if any(n not in CLASS_AFFECT for n in names) or sum(n != "neutral" for n in set(names)) < MIN_BASIC:
        return None
    return np.array([CLASS_AFFECT[n] for n in names], dtype=np.float64)


def valence_arousal(probs: np.ndarray, classes: Sequence[str], multilabel: bool = False
                    ) -> tuple[float, float] | None:
    """Probability-weighted (valence, arousal); None for other label sets or multi-label models."""
    positions = class_positions(classes)
    if positions is None or multilabel:
        return None
    w = np.asarray(probs, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
    v, a = w @ positions
    return float(v), float(a)
