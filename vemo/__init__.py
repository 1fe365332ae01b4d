"""vemo: classify videos by fusing cached features of pretrained models."""
__version__ = "0.1.0"
