"""Pictures of a prediction: the annotated key frame, the timeline, probabilities and the circumplex.

Figures are ``matplotlib.figure.Figure`` objects (no pyplot state); the key frame is drawn with
OpenCV. Each ``plot_*`` returns the figure, each ``save_*`` writes a PNG and returns its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from vemo.affect.circumplex import class_positions

if TYPE_CHECKING:
    from vemo.predict.prediction import Prediction

FACE_COLOUR = (255, 170, 0)   # RGB
TEXT_COLOUR = (0, 200, 255)


def annotated_key_frame(prediction: "Prediction") -> np.ndarray | None:
    """The key frame (RGB uint8) with face boxes (and the largest face's expression) and text boxes."""
    import cv2

    if prediction.key_frame is None:
        return None
    image = np.ascontiguousarray(prediction.key_frame.copy())
    thickness = max(1, round(max(image.shape[:2]) / 320))
    scale = max(0.4, max(image.shape[:2]) / 900)
    for line in prediction.key_frame_boxes.get("text", []):
        pts = np.asarray(line["box"], dtype=np.float32).round().astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [pts], True, TEXT_COLOUR, thickness)
    for face in prediction.key_frame_boxes.get("faces", []):
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        cv2.rectangle(image, (x1, y1), (x2, y2), FACE_COLOUR, thickness)
        if face.get("expression"):
            cv2.putText(image, face["expression"], (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        FACE_COLOUR, thickness, cv2.LINE_AA)
    return image


def save_key_frame(prediction: "Prediction", path: str | Path) -> Path | None:
    import cv2

    image = annotated_key_frame(prediction)
    if image is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image[..., ::-1]):
        raise OSError(f"cannot write {path}")
    return path


def plot_timeline(prediction: "Prediction") -> Figure | None:
    """Bars: how much the top class's probability falls when each stretch of the video is masked
    out (its frame, face and audio tokens); a dashed line marks the key frame."""
    if not prediction.timeline:
        return None
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.subplots()
    starts = np.array([s["start"] for s in prediction.timeline])
    ends = np.array([s["end"] for s in prediction.timeline])
    deltas = np.array([s["delta"] for s in prediction.timeline]) * 100
    colours = ["tab:green" if d > 0 else "tab:red" for d in deltas]
    ax.bar(starts, deltas, width=ends - starts, align="edge", color=colours, edgecolor="white")
    ax.axhline(0, color="black", lw=0.8)
    if prediction.key_frame_time is not None:
        ax.axvline(prediction.key_frame_time, color="tab:blue", ls="--", lw=1, label="key frame")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(0, float(ends[-1]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"drop of P({prediction.top})\nwhen masked (points)")
    ax.set_title(f"{prediction.id}: which moments drove '{prediction.top}'", fontsize=10)
    return fig


def save_timeline(prediction: "Prediction", path: str | Path) -> Path | None:
    fig = plot_timeline(prediction)
    if fig is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_probabilities(prediction: "Prediction") -> Figure:
    """Horizontal bars of every class's probability, highest on top."""
    ranked = prediction.ranked
    fig = Figure(figsize=(5, 0.4 * len(ranked) + 1), layout="constrained")
    ax = fig.subplots()
    names = [c for c, _ in ranked][::-1]
    values = [p * 100 for _, p in ranked][::-1]
    ax.barh(names, values, color=["tab:blue"] * (len(names) - 1) + ["tab:orange"])
    for y, v in enumerate(values):
        ax.text(v + 1, y, f"{v:.1f}%", va="center", fontsize=8)
    ax.set_xlim(0, 110)
    ax.set_xlabel("probability (%)")
    return fig


def plot_circumplex(prediction: "Prediction") -> Figure | None:
    """Valence (x) and arousal (y): the classes' mean positions and the video's readout."""
    if prediction.valence_arousal is None:
        return None
    fig = Figure(figsize=(4.2, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.add_patch(Circle((0, 0), 1, fill=False, color="grey", lw=0.8))
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    positions = class_positions(prediction.classes)
    for name, (v, a) in zip(prediction.classes, positions if positions is not None else []):
        ax.plot(v, a, "o", color="lightgrey")
        ax.annotate(name, (v, a), textcoords="offset points", xytext=(4, 4), fontsize=8, color="dimgrey")
    v, a = prediction.valence_arousal
    ax.plot(v, a, "*", color="tab:red", ms=16, label=f"this video ({v:+.2f}, {a:+.2f})")
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.legend(loc="lower center", fontsize=8)
    return fig
