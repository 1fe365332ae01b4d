"""vemo: classify videos by fusing cached features of pretrained models."""
from __future__ import annotations

from vemo.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["Prediction", "Predictor"]

# vemo.Predictor without importing torch or any extractor on `import vemo`
__getattr__ = lazy_exports(__name__, {"Predictor": "vemo.predict.predictor", "Prediction": "vemo.predict.prediction"})
