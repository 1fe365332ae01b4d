"""Stage 3: a trained checkpoint classifies new videos, and says why.

    from vemo import Predictor
    predictor = Predictor.from_checkpoint("runs/2026-11-26/10-00-00_crossattn")
    prediction = predictor.predict("clip.mp4")
    print(prediction.ranked[:3], prediction.contributions)

Heavy parts (extractors, torch) load on first use, so importing this package is cheap.
"""
from __future__ import annotations

from vemo.lazy import lazy_exports

__all__ = ["Predictor", "Prediction", "load_model", "resolve_checkpoint"]

__getattr__ = lazy_exports(__name__, {"Predictor": "vemo.predict.predictor", "Prediction": "vemo.predict.prediction",
                                      "load_model": "vemo.predict.checkpoint",
                                      "resolve_checkpoint": "vemo.predict.checkpoint"})
