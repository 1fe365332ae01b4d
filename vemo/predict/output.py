"""What ``python -m vemo.predict`` prints and writes: predictions as text a person reads at a glance,
as rows of ``predictions.csv``, and the unique ids and folder names of its inputs."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from vemo.predict.prediction import Prediction

BAR_WIDTH = 24


def _bar(p: float) -> str:
    return "█" * int(round(p * BAR_WIDTH))


def format_prediction(prediction: "Prediction", modalities: Sequence[str], files: dict[str, Path] | None = None,
                      top_k: int | None = None) -> str:
    """The ranked classes, valence/arousal, each modality's state and contribution, and the evidence."""
    head = prediction.id + (f"  ({prediction.source}" + (f", {prediction.duration:.1f} s)" if prediction.duration
                                                         else ")") if prediction.source else "")
    lines = [head]
    if not prediction.ok:
        lines.append(f"  could not classify: {prediction.error}")
        return "\n".join(lines)
    kind = "sigmoid, independent classes" if prediction.multilabel else "softmax"
    lines += ["", f"{'class':<14} {'probability':>11}   ({kind})", "-" * 40]
    ranked = prediction.ranked[: top_k or None]
    for name, p in ranked:
        mark = "  <-" if name in prediction.predicted else ""
        lines.append(f"{name:<14} {p * 100:10.1f}%   {_bar(p)}{mark}")
    if len(ranked) < len(prediction.ranked):
        lines.append(f"... {len(prediction.ranked) - len(ranked)} more classes")
    if prediction.valence_arousal is not None:
        v, a = prediction.valence_arousal
        lines += ["", f"valence {v:+.2f}  arousal {a:+.2f}  (probability-weighted class means; -1 .. +1)"]

    lines += ["", f"{'modality':<10} {'state':<28} {'contribution':>12}", "-" * 52]
    for m in modalities:
        state = prediction.states.get(m, "absent")
        c = prediction.contributions.get(m)
        contribution = f"{c * 100:+.1f} points" if c is not None else "-"
        lines.append(f"{m:<10} {state[:28]:<28} {contribution:>12}")
    lines.append(f"(contribution: how much P({prediction.top}) falls when the modality is masked out)")

    evidence = prediction.evidence
    lines += ["", "evidence"]
    if "transcript" in evidence:
        language = f" ({evidence['language']})" if evidence.get("language") else ""
        lines.append(f"  transcript{language}: \"{evidence['transcript']}\"")
    if "on_screen_text" in evidence:
        lines.append(f"  on-screen text: {' | '.join(evidence['on_screen_text'])}")
    if "audio_tags" in evidence:
        lines.append("  audio tags: " + ", ".join(f"{t['label']} {t['score']:.2f}" for t in evidence["audio_tags"]))
    faces = evidence.get("faces")
    if faces:
        text = f"  faces: in {faces['frames_with_face']} of {faces['frames']} sampled frames"
        if faces.get("expressions"):
            top = list(faces["expressions"].items())[:3]
            text += "; expressions " + ", ".join(f"{k} {v:.2f}" for k, v in top)
        lines.append(text)
    if "caption" in evidence:
        lines.append(f"  caption: {evidence['caption']}")
    if len(lines) and lines[-1] == "evidence":
        lines.append("  (no transcript, text, audio tags, faces or caption)")
    if prediction.timeline:
        best = max(prediction.timeline, key=lambda s: s["delta"])
        if best["delta"] > 0:
            lines.append(f"  most telling stretch: {best['start']:.1f}-{best['end']:.1f} s (masking it lowers "
                         f"P({prediction.top}) by {best['delta'] * 100:.1f} points)")
    for note in prediction.notes:
        lines.append(f"  note: {note}")
    for label, path in (files or {}).items():
        lines.append(f"{label}: {path}")
    return "\n".join(lines)


def format_summary(predictions: Sequence["Prediction"], limit: int = 30) -> str:
    """One line per video: id, predicted class(es) and probability (first ``limit`` videos)."""
    width = max([len(p.id) for p in predictions[:limit]] + [5])
    lines = [f"{'video':<{width}}  {'prediction':<24} {'prob':>6}", "-" * (width + 33)]
    for p in predictions[:limit]:
        if p.ok:
            lines.append(f"{p.id:<{width}}  {'|'.join(p.predicted):<24} {p.ranked[0][1] * 100:5.1f}%")
        else:
            lines.append(f"{p.id:<{width}}  FAILED: {p.error}"[: width + 120])
    if len(predictions) > limit:
        lines.append(f"... {len(predictions) - limit} more in predictions.csv")
    return "\n".join(lines)


class CsvWriter:
    """``predictions.csv``, one row per video, flushed as predictions arrive (a long run that is
    stopped keeps what it had)."""

    def __init__(self, path: Path, classes: Sequence[str], modalities: Sequence[str]):
        self.path = Path(path)
        self.classes, self.modalities = list(classes), list(modalities)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["id", "source", "status", "prediction", "probability", "valence", "arousal",
                               *[f"p_{c}" for c in self.classes], *[f"state_{m}" for m in self.modalities],
                               "error"])

    def add(self, p: "Prediction") -> None:
        va = p.valence_arousal or (None, None)
        probs = dict(p.ranked)
        self._writer.writerow([
            p.id, p.source or "", "ok" if p.ok else "failed", "|".join(p.predicted),
            f"{p.ranked[0][1]:.6f}" if p.ok else "",
            "" if va[0] is None else f"{va[0]:.4f}", "" if va[1] is None else f"{va[1]:.4f}",
            *[f"{probs[c]:.6f}" if p.ok else "" for c in self.classes],
            *[p.states.get(m, "") for m in self.modalities], p.error or ""])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def unique_ids(names: Iterable[str]) -> list[str]:
    """Names made unique with -2, -3, ... (two inputs called clip.mp4 in different folders)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}-{count}")
    return out


def safe_folder_name(video_id: str) -> str:
    """A video id (``anger/0001``) as one folder name."""
    return video_id.replace(os.sep, "__").replace("/", "__") or "video"
