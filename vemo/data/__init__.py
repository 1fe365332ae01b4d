"""Everything between the feature store and a batch: labels, splits, normalization, loaders."""
from vemo.data.collate import collate
from vemo.data.datamodule import FeatureDataModule
from vemo.errors import ModalityError
from vemo.data.demo_datamodule import DemoDataModule
from vemo.data.labels import LabelError, Labels, read_labels

__all__ = ["DemoDataModule", "FeatureDataModule", "LabelError", "Labels", "ModalityError", "collate",
           "read_labels"]
