"""PNG plots of a run: confusion matrix and learning curves.

Figures are ``matplotlib.figure.Figure`` objects written straight to files: no pyplot state and no
backend switch, so importing vemo never changes how a user's own plots are shown.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: str | Path,
                          title: str = "Test confusion matrix") -> Path:
    """Rows are true classes, normalized to sum to 1; each cell also shows its count."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(4.0, 0.7 * len(classes) + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{share[i, j]:.2f}\n({int(matrix[i, j])})", ha="center", va="center",
                    fontsize=8, color="white" if share[i, j] > 0.5 else "black")
    acc = np.trace(matrix) / max(1, matrix.sum())
    ax.set_title(f"{title} (accuracy {acc:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def read_epoch_metrics(metrics_csv: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning's metrics.csv -> {metric: [(epoch, value), ...]} (empty cells skipped)."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            epoch = row.get("epoch")
            if not epoch:
                continue
            for key, value in row.items():
                if key in ("epoch", "step") or not value:
                    continue
                try:
                    series.setdefault(key, []).append((int(float(epoch)), float(value)))
                except ValueError:
                    continue
    return series


def plot_learning_curves(metrics_csv: str | Path, path: str | Path, monitor: str = "val/acc",
                         mode: str = "max") -> Path:
    """Loss and the monitored metric per epoch, train next to val; the best epoch (by ``mode``) marked."""
    series = read_epoch_metrics(metrics_csv)
    metric = monitor.split("/", 1)[-1]
    panels = [("loss", ["train/loss", "val/loss"]), (metric, [f"train/{metric}", f"val/{metric}"])]
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            points = sorted(series.get(key, []))
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=key)
        best = series.get(monitor)
        if monitor.endswith(f"/{title}") and best:
            sign = 1 if mode == "max" else -1
            epoch, value = max(best, key=lambda p: (sign * p[1], -p[0]))  # the first epoch that reached it
            ax.axvline(epoch, color="grey", linestyle=":", label=f"best {monitor} {value:.3f}")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (creating the folder) and free the figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    if fig.canvas.manager is not None:  # made through pyplot (e.g. Optuna's plots): release it there
        import matplotlib.pyplot as plt
        plt.close(fig)
    return path


def plot_reliability(curves: dict, path: str | Path, temperature: float) -> Path:
    """Reliability diagrams (accuracy against confidence per bin), before and after temperature
    scaling, one panel per split; the diagonal is perfect calibration."""
    fig = Figure(figsize=(4.5 * len(curves), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(curves)))
    for ax, (split, (before, after)) in zip(axes, curves.items()):
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
        for rel, label, colour in ((before, "before", "tab:red"), (after, f"T = {temperature:.2f}", "tab:blue")):
            seen = rel.count > 0
            ax.plot(rel.confidence[seen], rel.accuracy[seen], "o-", color=colour, ms=4,
                    label=f"{label} (ECE {rel.ece * 100:.1f}%)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{split} split")
        ax.legend(loc="upper left", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
