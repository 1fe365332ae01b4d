"""The registry of benchmark adapters (``vemo.datasets.get(name)``)."""
from vemo.registry import Registry

DATASETS: Registry = Registry("dataset")
