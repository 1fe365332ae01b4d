"""Temperature scaling and expected calibration error (ECE).

A classifier's probabilities are *calibrated* when, among the videos it gives 80%, about 80% are
right. Temperature scaling divides the logits by one number ``T`` fitted on the validation split
(minimising its negative log-likelihood); it changes no prediction, only how sure they are.
ECE bins predictions by confidence and averages |accuracy - confidence| weighted by bin size.
For multi-label models every (video, class) pair is one binary prediction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ECE_BINS = 15


def _nll(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
    return torch.nn.functional.cross_entropy(logits, labels)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, multilabel: bool = False) -> float:
    """The T > 0 minimising the NLL of ``logits / T`` (optimised over log T, so T stays positive)."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels))
    y = y.double() if multilabel else y.long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = _nll(x / log_t.exp(), y, multilabel)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(1e-2, 1e2))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, multilabel: bool,
                            temperature: float = 1.0) -> float:
    """Mean NLL (cross-entropy; BCE per class for multi-label) of ``logits / temperature``."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    y = torch.as_tensor(np.asarray(labels))
    return float(_nll(x, y.double() if multilabel else y.long(), multilabel))


def probabilities(logits: np.ndarray, multilabel: bool, temperature: float = 1.0) -> np.ndarray:
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    return (torch.sigmoid(x) if multilabel else torch.softmax(x, dim=-1)).numpy()


@dataclass
class Reliability:
    """Per confidence bin: mean confidence, accuracy and count (empty bins have count 0)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        total = self.count.sum()
        if total == 0:
            return 0.0
        return float(np.sum(self.count * np.abs(self.accuracy - self.confidence)) / total)


def reliability(probs: np.ndarray, labels: np.ndarray, multilabel: bool, bins: int = ECE_BINS) -> Reliability:
    """Confidence bins of the top class (single-label) or of every class probability (multi-label)."""
    probs = np.asarray(probs, dtype=np.float64)
    if multilabel:
        confidence = probs.reshape(-1)
        correct = (np.asarray(labels).reshape(-1) > 0.5).astype(np.float64)
        # a binary prediction's confidence is that of the side it takes
        correct = np.where(confidence >= 0.5, correct, 1 - correct)
        confidence = np.maximum(confidence, 1 - confidence)
    else:
        confidence = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.int64)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), 0.0)
        mean_acc = np.where(count > 0, acc_sum / np.maximum(count, 1), 0.0)
    return Reliability(edges, mean_conf, mean_acc, count)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, multilabel: bool = False,
                               bins: int = ECE_BINS) -> float:
    return reliability(probs, labels, multilabel, bins).ece


def collect_logits(model, dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, C], labels) of a whole dataset, in order, on one process (never sharded)."""
    from torch.utils.data import DataLoader

    from vemo.data.collate import collate

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
                feats = {m: t.to(device) for m, t in batch["features"].items()}
                masks = {m: t.to(device) for m, t in batch["masks"].items()}
                logits.append(model(feats, masks).float().cpu().numpy())
                labels.append(batch["labels"].numpy())
    finally:
        model.train(was_training)
    return np.concatenate(logits), np.concatenate(labels)


def calibration_report(model, dm, test: bool) -> tuple[dict[str, float], dict[str, tuple[Reliability, Reliability]]]:
    """Fit T on validation; ECE before/after on validation (and test); for Ekman-like label sets the
    test split's probability-weighted valence/arousal readout and its distance to the true class's.
    Returns (metrics, {split: (reliability before, after)})."""
    from vemo.affect.circumplex import class_positions

    multilabel = bool(dm.multilabel)
    val_logits, val_labels = collect_logits(model, dm.datasets["val"])
    temperature = fit_temperature(val_logits, val_labels, multilabel)
    metrics: dict[str, float] = {"temperature": temperature}
    curves = {}
    splits = [("val", val_logits, val_labels)]
    if test and len(dm.datasets["test"]):
        splits.append(("test", *collect_logits(model, dm.datasets["test"])))
    positions = None if multilabel else class_positions(dm.classes)
    for name, logits, labels in splits:
        before = reliability(probabilities(logits, multilabel), labels, multilabel)
        after = reliability(probabilities(logits, multilabel, temperature), labels, multilabel)
        metrics[f"{name}/ece"], metrics[f"{name}/ece_calibrated"] = before.ece, after.ece
        metrics[f"{name}/nll"] = negative_log_likelihood(logits, labels, multilabel)
        metrics[f"{name}/nll_calibrated"] = negative_log_likelihood(logits, labels, multilabel, temperature)
        curves[name] = (before, after)
        if name == "test" and positions is not None:
            readout = probabilities(logits, multilabel, temperature) @ positions
            truth = positions[np.asarray(labels)]
            metrics["test/valence"] = float(readout[:, 0].mean())
            metrics["test/arousal"] = float(readout[:, 1].mean())
            metrics["test/va_error"] = float(np.linalg.norm(readout - truth, axis=1).mean())
    return metrics, curves
