"""Stage 3: a trained checkpoint classifies new videos, and says why.

    from vemo import Predictor
    predictor = Predictor.from_checkpoint("runs/2026-11-26/10-00-00_crossattn")
    prediction = predictor.predict("clip.mp4")
    print(prediction.ranked[:3], prediction.contributions)

Heavy parts (extractors, torch) load on first use, so importing this package is cheap.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Predictor", "Prediction", "load_model", "resolve_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from vemo.predict.predictor import Predictor
        return Predictor
    if name == "Prediction":
        from vemo.predict.prediction import Prediction
        return Prediction
    if name in ("load_model", "resolve_checkpoint"):
        from vemo.predict import checkpoint
        return getattr(checkpoint, name)
    raise AttributeError(f"module 'vemo.predict' has no attribute {name!r}")
