"""vemo: classify videos by fusing cached features of pretrained models."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # vemo.Predictor without importing torch or any extractor on `import vemo`
    if name == "Predictor":
        from vemo.predict.predictor import Predictor
        return Predictor
    if name == "Prediction":
        from vemo.predict.prediction import Prediction
        return Prediction
    raise AttributeError(f"module 'vemo' has no attribute {name!r}")
