"""The zero-shot experts: one per modality, each turning what an extractor saw into affect tokens.

An affect token is ``[log q (K classes), source one-hot (faces, audio, speech, ocr), weight]``:
``q`` is the token's distribution over the classes (mixed with a little of the uniform one, so no
class is ever impossible), the weight in [0, 1] says how much it is to be believed.

- faces: one token per frame with a face, from the facial-expression probabilities of the frame's
  largest face (``expressions.csv``); weight = detector score x face size (a face whose box side
  reaches ``full_size`` of the frame's shorter side counts fully);
- audio: one token per window whose affect-carrying AudioSet classes (``audioset.csv``) score at
  least ``min_evidence`` together; q mixes the classes' rows by their scores, the weight is the sum
  of the scores (at most 1);
- speech, ocr: one token for the text, q = softmax of its cosine similarities to each class's mean
  description (``texts.json``) over ``temperature``, in the text encoder's own space; weight 1.

``combine`` is the product of experts that the zero-shot model and the explanations share.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from vemo.affect.tables import SOURCES, AffectTables


def make_token(q: np.ndarray, source: str, weight: float, tables: AffectTables) -> np.ndarray:
    """One affect token from a distribution (or unnormalised evidence) over the classes."""
    k = len(tables.classes)
    q = np.asarray(q, dtype=np.float64)
    q = (1 - tables.smoothing) * q / q.sum() + tables.smoothing / k
    onehot = np.zeros(len(SOURCES))
    onehot[SOURCES.index(source)] = 1.0
    return np.concatenate([np.log(q), onehot, [float(np.clip(weight, 0.0, 1.0))]]).astype(np.float32)


def _stack(tokens: list[np.ndarray], times: list[float | None], tables: AffectTables):
    if not tokens:
        return np.zeros((0, tables.token_dim), np.float32), np.zeros(0)
    return np.stack(tokens), np.array([np.nan if t is None else t for t in times], dtype=np.float64)


def expression_distribution(expression: Mapping[str, float], tables: AffectTables) -> np.ndarray | None:
    """A facial-expression model's probabilities (label -> p) mapped onto the classes."""
    evidence = np.zeros(len(tables.classes))
    for label, p in expression.items():
        row = tables.expressions.get(str(label).strip().lower())
        if row is not None:
            evidence += float(p) * row
    return evidence if evidence.sum() > 0 else None


def face_tokens(side: Mapping[str, Any] | None, frame_size: tuple[int, int], tables: AffectTables):
    """(tokens [n, D], times [n]) from the faces extractor's side data (frames with an expression)."""
    from vemo.extract.face_detector import largest

    full = float(tables.params["faces"].get("full_size", 0.2))
    short_side = max(1, min(int(frame_size[0]), int(frame_size[1])))
    tokens, times = [], []
    for frame in (side or {}).get("frames") or []:
        expression = frame.get("expression")
        boxes = np.asarray(frame.get("boxes") or [], dtype=np.float64).reshape(-1, 5)
        if not expression or not len(boxes):
            continue
        box = largest(boxes)
        q = expression_distribution(expression, tables)
        if box is None or q is None:
            continue
        side_length = np.sqrt(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))
        weight = float(box[4]) * min(1.0, side_length / (full * short_side))
        tokens.append(make_token(q, "faces", weight, tables))
        times.append(frame.get("time"))
    return _stack(tokens, times, tables)


def audio_tokens(side: Mapping[str, Any] | None, tables: AffectTables):
    """(tokens, times) from the audio extractor's per-window scores of the affect-carrying classes."""
    scores = (side or {}).get("affect_scores") or {}
    window_times = (side or {}).get("window_times") or []
    labels = [label for label in scores if label in tables.audioset]
    if not labels:
        return _stack([], [], tables)
    matrix = np.array([scores[label] for label in labels], dtype=np.float64)    # [A, windows]
    rows = np.stack([tables.audioset[label] for label in labels])               # [A, K]
    least = float(tables.params["audio"].get("min_evidence", 0.05))
    tokens, times = [], []
    for w in range(matrix.shape[1]):
        total = float(matrix[:, w].sum())
        if total < least:
            continue
        tokens.append(make_token(matrix[:, w] @ rows, "audio", min(1.0, total), tables))
        times.append(window_times[w] if w < len(window_times) else None)
    return _stack(tokens, times, tables)


def text_prototypes(encode, tables: AffectTables) -> np.ndarray:
    """[K, D] unit vectors: each class's mean description embedding under ``encode`` (texts -> [N, D])."""
    rows = []
    for c in tables.classes:
        vectors = np.asarray(encode(list(tables.texts[c])), dtype=np.float64)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        mean = vectors.mean(axis=0)
        rows.append(mean / max(np.linalg.norm(mean), 1e-12))
    return np.stack(rows)


def text_token(embedding: np.ndarray | None, prototypes: np.ndarray | None, source: str, tables: AffectTables):
    """(tokens [1, D] or [0, D], times) for one text embedding (speech or ocr); ``prototypes`` may be
    None when there is no text."""
    if embedding is None or not len(embedding):
        return _stack([], [], tables)
    v = np.asarray(embedding, dtype=np.float64).reshape(-1)
    v = v / max(np.linalg.norm(v), 1e-12)
    logits = prototypes @ v / float(tables.params["text"].get("temperature", 0.05))
    q = np.exp(logits - logits.max())
    return _stack([make_token(q, source, 1.0, tables)], [None], tables)


def combine(tokens, mask, log_prior, modality_weight, sources: Sequence[str] = SOURCES):
    """The product of experts, in torch: ``tokens`` [B, T, D], ``mask`` [B, T] (True: a real token),
    ``log_prior`` [K], ``modality_weight`` [S] -> class logits [B, K].

    Per modality: the weighted mean of its tokens' log-probabilities (its opinion) and its strength,
    1 - prod(1 - weight) over its tokens (how sure that at least one token is right; 0 without
    evidence, so the modality abstains). logits = log prior + sum over modalities of
    modality_weight x strength x (opinion - its mean over the classes)."""
    import torch

    k, s = log_prior.shape[-1], len(sources)
    logq = tokens[..., :k]
    weight = tokens[..., k + s] * mask.to(tokens.dtype)
    per_source = weight[..., None] * tokens[..., k:k + s]                           # [B, T, S]
    total = per_source.sum(dim=1)                                                   # [B, S]
    opinion = torch.einsum("bts,btk->bsk", per_source, logq) / total.clamp_min(1e-9)[..., None]
    opinion = opinion - opinion.mean(dim=-1, keepdim=True)
    strength = 1 - torch.exp(torch.log1p(-per_source.clamp(max=1 - 1e-6)).sum(dim=1))  # [B, S]
    return log_prior + ((modality_weight * strength)[..., None] * opinion).sum(dim=1)
