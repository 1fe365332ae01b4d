"""The metric sets vemo reports, built on torchmetrics."""
from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score,
                                         MultilabelAveragePrecision, MultilabelF1Score,
                                         MultilabelPrecision, MultilabelRecall)


def scalar_metrics(num_classes: int, multilabel: bool) -> MetricCollection:
    if not multilabel:
        return MetricCollection({
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "acc_balanced": MulticlassAccuracy(num_classes, average="macro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        })
    return MetricCollection({
        "map_macro": MultilabelAveragePrecision(num_classes, average="macro"),
        "map_micro": MultilabelAveragePrecision(num_classes, average="micro"),
        "f1_macro": MultilabelF1Score(num_classes, average="macro", threshold=0.5),
        "f1_micro": MultilabelF1Score(num_classes, average="micro", threshold=0.5),
        "precision_micro": MultilabelPrecision(num_classes, average="micro", threshold=0.5),
        "recall_micro": MultilabelRecall(num_classes, average="micro", threshold=0.5),
    })


def per_class_f1(num_classes: int, multilabel: bool):
    if multilabel:
        return MultilabelF1Score(num_classes, average="none", threshold=0.5)
    return MulticlassF1Score(num_classes, average="none")


def validation_metrics(multilabel: bool) -> list[str]:
    """Every metric validation logs, by name (what ``monitor`` may choose); val/videos is the count evaluated."""
    names = list(scalar_metrics(2, multilabel).keys(keep_base=True))
    return [f"val/{n}" for n in names] + ["val/loss", "val/videos"]


def default_monitor(multilabel: bool) -> str:
    """The validation metric checkpoints are chosen on."""
    return "val/map_macro" if multilabel else "val/acc"


__all__ = ["MulticlassConfusionMatrix", "default_monitor", "per_class_f1", "scalar_metrics", "validation_metrics"]
