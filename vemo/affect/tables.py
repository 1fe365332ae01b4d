"""The affect tables: what a pretrained model's output says about the emotion classes.

The tables are data files next to this module (``tables/``), so that they can be read, argued with
and changed without touching code:

- ``expressions.csv``: a facial-expression label (FER-2013's seven, synonyms used by other models)
  -> weights over the classes;
- ``audioset.csv``: an AudioSet class that carries affect (music moods, laughter, crying, screams,
  gasps, danger sounds) -> weights over the classes;
- ``texts.json``: several descriptions per class, compared with a transcript or on-screen text in
  the text encoder's space;
- ``experts.json``: the classes, the prior, each modality's weight in the product of experts and the
  experts' few parameters.

Every row of weights is non-negative and sums to 1. ``load_tables()`` checks that and names the
file and line of a row that does not; its ``digest`` goes into the settings of features made with
the tables, so features of two versions of the tables are never mixed.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vemo.errors import DataError

TABLES_DIR = Path(__file__).parent / "tables"
SOURCES = ("faces", "audio", "speech", "ocr")  # the modalities whose outputs the experts read
FILES = ("expressions.csv", "audioset.csv", "texts.json", "experts.json")


@dataclass(frozen=True)
class AffectTables:
    classes: tuple[str, ...]
    prior: np.ndarray                      # [K], sums to 1
    modality_weight: dict[str, float]      # per source
    smoothing: float                       # mixed with the uniform distribution into every token's
    expressions: dict[str, np.ndarray]     # label (lower case) -> [K]
    audioset: dict[str, np.ndarray]        # AudioSet display name -> [K]
    texts: dict[str, tuple[str, ...]]      # class -> descriptions
    params: dict[str, dict[str, Any]]      # per expert: faces, audio, text
    digest: str                            # sha256 over the four files

    @property
    def token_dim(self) -> int:
        """An affect token: log-probabilities over the classes, the source one-hot, the weight."""
        return len(self.classes) + len(SOURCES) + 1


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from None


def _weights_table(path: Path, classes: tuple[str, ...], lower: bool) -> dict[str, np.ndarray]:
    rows: dict[str, np.ndarray] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("label", *classes) if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: the header lacks the column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip()
            try:
                weights = np.array([float(row[c]) for c in classes], dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{path}, line {line}: the weights of {label!r} are not all numbers") from None
            if not label or (weights < 0).any() or abs(weights.sum() - 1) > 1e-6:
                raise DataError(f"{path}, line {line}: {label!r} needs a label and non-negative weights "
                                f"summing to 1 (they sum to {weights.sum():g})")
            rows[label.lower() if lower else label] = weights
    return rows


@functools.lru_cache(maxsize=None)
def load_tables(folder: str | None = None) -> AffectTables:
    """The tables in ``folder`` (default: the ones shipped with vemo), checked."""
    root = Path(folder) if folder else TABLES_DIR
    experts = _read_json(root / "experts.json")
    classes = tuple(experts.get("classes") or ())
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise DataError(f"{root / 'experts.json'}: 'classes' must list at least two distinct classes")
    prior = np.array([float((experts.get("prior") or {}).get(c, 0.0)) for c in classes], dtype=np.float64)
    if (prior <= 0).any() or abs(prior.sum() - 1) > 1e-6:
        raise DataError(f"{root / 'experts.json'}: 'prior' needs a positive probability for every class, summing to 1")
    weights = {s: float((experts.get("modality_weight") or {}).get(s, 0.0)) for s in SOURCES}
    texts_doc = _read_json(root / "texts.json").get("classes") or {}
    texts = {c: tuple(texts_doc.get(c) or ()) for c in classes}
    empty = [c for c, t in texts.items() if not t]
    if empty:
        raise DataError(f"{root / 'texts.json'}: no description for {', '.join(empty)}")
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return AffectTables(
        classes=classes, prior=prior / prior.sum(), modality_weight=weights,
        smoothing=float(experts.get("smoothing", 0.1)),
        expressions=_weights_table(root / "expressions.csv", classes, lower=True),
        audioset=_weights_table(root / "audioset.csv", classes, lower=False),
        texts=texts, params={k: dict(experts.get(k) or {}) for k in ("faces", "audio", "text")},
        digest=digest.hexdigest())
