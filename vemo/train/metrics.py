"""The metric sets vemo reports, built on torchmetrics.

The metric names are plain constants, so checking a ``monitor=`` or a sweep's ``metric=`` needs no
torchmetrics import; ``scalar_metrics`` builds the collections under exactly these names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchmetrics import Metric, MetricCollection

SINGLE_LABEL_METRICS = ("acc", "acc_balanced", "f1_macro")
MULTI_LABEL_METRICS = ("map_macro", "map_micro", "f1_macro", "f1_micro", "precision_micro", "recall_micro")


def metric_names(multilabel: bool) -> tuple[str, ...]:
    return MULTI_LABEL_METRICS if multilabel else SINGLE_LABEL_METRICS


# Training-split mAP is computed over this many fixed thresholds: the exact one keeps every step's
# predictions for the whole epoch, memory that grows with the dataset (and fragments the heap on CPU).
TRAIN_AP_THRESHOLDS = 200


def scalar_metrics(num_classes: int, multilabel: bool, exact: bool = True) -> MetricCollection:
    """The split's scalar metrics. ``exact=False`` (the training split) bins average precision over
    ``TRAIN_AP_THRESHOLDS`` thresholds, so its state has a fixed size however long the epoch."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (MulticlassAccuracy, MulticlassF1Score, MultilabelAveragePrecision,
                                             MultilabelF1Score, MultilabelPrecision, MultilabelRecall)

    if not multilabel:
        metrics = (MulticlassAccuracy(num_classes, average="micro"), MulticlassAccuracy(num_classes, average="macro"),
                   MulticlassF1Score(num_classes, average="macro"))
    else:
        thresholds = None if exact else TRAIN_AP_THRESHOLDS
        metrics = (MultilabelAveragePrecision(num_classes, average="macro", thresholds=thresholds),
                   MultilabelAveragePrecision(num_classes, average="micro", thresholds=thresholds),
                   MultilabelF1Score(num_classes, average="macro", threshold=0.5),
                   MultilabelF1Score(num_classes, average="micro", threshold=0.5),
                   MultilabelPrecision(num_classes, average="micro", threshold=0.5),
                   MultilabelRecall(num_classes, average="micro", threshold=0.5))
    return MetricCollection(dict(zip(metric_names(multilabel), metrics)))


def per_class_f1(num_classes: int, multilabel: bool) -> Metric:
    from torchmetrics.classification import MulticlassF1Score, MultilabelF1Score

    if multilabel:
        return MultilabelF1Score(num_classes, average="none", threshold=0.5)
    return MulticlassF1Score(num_classes, average="none")


def validation_metrics(multilabel: bool) -> list[str]:
    """Every metric validation logs, by name (what ``monitor`` may choose); val/videos is the count evaluated."""
    return [f"val/{n}" for n in metric_names(multilabel)] + ["val/loss", "val/videos"]


def default_monitor(multilabel: bool) -> str:
    """The validation metric checkpoints are chosen on."""
    return "val/map_macro" if multilabel else "val/acc"
