"""``Prediction``: what a model says about one video (or one set of features), and why."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prediction:
    """What a checkpoint says about one video (or one set of features), and why.

    ``contributions[m]`` is the top class's probability minus its probability with modality ``m``
    masked out (positive: ``m`` pushed towards the top class). ``timeline`` lists stretches of the
    video with the same change when their frames and audio are masked out.
    """

    id: str
    classes: list[str]
    probs: np.ndarray
    multilabel: bool
    source: str | None = None
    states: dict[str, str] = field(default_factory=dict)     # per modality: ok / absent: why / failed: why
    contributions: dict[str, float] = field(default_factory=dict)
    valence_arousal: tuple[float, float] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, float]] | None = None             # start, end, delta
    duration: float | None = None
    notes: list[str] = field(default_factory=list)
    key_frame: np.ndarray | None = None                        # RGB uint8, unannotated
    key_frame_time: float | None = None
    key_frame_boxes: dict[str, list[Any]] = field(default_factory=dict)  # faces, text
    error: str | None = None                                   # set when nothing could be classified
    seconds: dict[str, float] = field(default_factory=dict)   # where the time went

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ranked(self) -> list[tuple[str, float]]:
        if not self.ok:
            return []
        order = np.argsort(-self.probs, kind="stable")
        return [(self.classes[i], float(self.probs[i])) for i in order]

    @property
    def top(self) -> str | None:
        return self.ranked[0][0] if self.ok else None

    @property
    def predicted(self) -> list[str]:
        """The top class, or for a multi-label model every class with probability >= 0.5."""
        if not self.ok:
            return []
        if self.multilabel:
            return [c for c, p in self.ranked if p >= 0.5] or [self.ranked[0][0]]
        return [self.ranked[0][0]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no images)."""
        out: dict[str, Any] = {"id": self.id, "source": self.source, "ok": self.ok}
        if not self.ok:
            out.update(error=self.error, states=self.states, notes=self.notes)
            return out
        out.update({
            "top": self.top, "predicted": self.predicted, "multilabel": self.multilabel,
            "probabilities": {c: round(p, 6) for c, p in self.ranked},
            "valence_arousal": (None if self.valence_arousal is None else
                                {"valence": round(self.valence_arousal[0], 4),
                                 "arousal": round(self.valence_arousal[1], 4)}),
            "modalities": self.states,
            "contributions": {m: round(v, 6) for m, v in self.contributions.items()},
            "evidence": self.evidence,
            "timeline": self.timeline,
            "duration": self.duration,
            "key_frame_time": self.key_frame_time,
            "notes": self.notes,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        })
        return out
