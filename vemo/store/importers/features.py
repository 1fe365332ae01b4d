"""One video's released feature dict -> vemo features: renamed, converted, padding rows dropped.

The released files (VEMOCLAP's Ekman-6 / VideoEmotion-8 features and the MovieNet trailers'
features.pkl) share five keys, made by the same extractors. Missing data is spelled several ways
there: ``None``, an empty list or array, or rows of zeros (frames without a face, padding to a
fixed length, a zero vector for a video without speech). All of them become absent tokens here, so
the data loader masks them instead of learning from zeros.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class ReleasedKey:
    key: str        # the name in the released files
    modality: str   # vemo's name for it
    kind: str       # "sequence" or "vector"
    dim: int
    model: str      # what made it, as the release's extraction code says


RELEASED_KEYS: tuple[ReleasedKey, ...] = (
    ReleasedKey("clip", "frames", "sequence", 512, "CLIP ViT-B/32 image embeddings of sampled frames"),
    ReleasedKey("beats", "audio", "sequence", 768,
                "BEATs (iter3+, fine-tuned on AudioSet-2M) embeddings of audio chunks"),
    ReleasedKey("face_emotion", "faces", "sequence", 768,
                "trpakov/vit-face-expression embeddings, mean of the two largest faces per frame"),
    ReleasedKey("asr_sentiment", "speech", "vector", 768,
                "Whisper transcript -> cardiffnlp/twitter-roberta-base-sentiment-latest [CLS]"),
    ReleasedKey("ocr_sentiment", "ocr", "vector", 768,
                "on-screen text -> cardiffnlp/twitter-roberta-base-sentiment-latest [CLS]"),
)
BY_KEY = {k.key: k for k in RELEASED_KEYS}
# keys a per-video dict may carry besides features; they are neither imported nor reported as unknown
METADATA_KEYS = frozenset({"label", "labels", "video_path", "id", "path", "name", "features"})
NONFINITE_POLICIES = ("drop-modality", "skip-video")


@dataclass
class CleanVideo:
    """One video's features in vemo's names, and what happened to each released key."""

    features: dict[str, np.ndarray | None] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)        # modality -> ok | absent: why | failed: why
    zero_rows: dict[str, int] = field(default_factory=dict)     # modality -> all-zero rows dropped
    nonfinite: list[str] = field(default_factory=list)          # released keys holding NaN/inf
    problems: list[str] = field(default_factory=list)           # "key: what is wrong"
    unknown: list[str] = field(default_factory=list)            # keys this importer does not know

    @property
    def failed(self) -> list[str]:
        return [m for m, s in self.states.items() if s.startswith("failed")]

    @property
    def has_tokens(self) -> bool:
        return any(v is not None and len(v) for v in self.features.values())


def to_matrix(value: Any, dim: int) -> np.ndarray | None:
    """A feature as float32 [T, dim]; None when the release says it is missing. Raises ValueError."""
    if value is None:
        return None
    if hasattr(value, "detach"):  # a torch tensor (no torch import needed to recognise one)
        value = value.detach().cpu().float().numpy()
    elif isinstance(value, (list, tuple)):
        if len(value) == 0:
            return None
        value = [v.detach().cpu().float().numpy() if hasattr(v, "detach") else v for v in value]
    try:
        arr = np.asarray(value)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"is not a rectangular array ({e})") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"holds {arr.dtype} values, not numbers")
    if arr.size == 0:
        return None
    shape = arr.shape
    while arr.ndim > 2 and arr.shape[0] == 1:  # a leading batch axis of one
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"has shape {tuple(shape)}, expected [T, {dim}] or [{dim}]")
    return arr.astype(np.float32)


def clean_video(raw: Mapping[str, Any], keys: Mapping[str, ReleasedKey], dtype: str) -> CleanVideo:
    """Rename, convert and check one video's released features (``keys``: the ones to import)."""
    out = CleanVideo()
    out.unknown = sorted(str(k) for k in raw if k not in BY_KEY and k not in METADATA_KEYS)
    for key, spec in keys.items():
        m = spec.modality
        out.zero_rows[m] = 0
        if key not in raw:
            out.features[m], out.states[m] = None, f"absent: no {key!r} in the source"
            continue
        try:
            arr = to_matrix(raw[key], spec.dim)
        except ValueError as e:
            out.features[m], out.states[m] = None, f"failed: {key!r} {e}"
            out.problems.append(f"{key}: {e}")
            continue
        if arr is None:
            out.features[m], out.states[m] = None, f"absent: {key!r} is empty in the source"
            continue
        bad_rows = int((~np.isfinite(arr)).any(axis=1).sum())
        cast = arr.astype(dtype)
        overflow = int((~np.isfinite(cast)).any(axis=1).sum()) - bad_rows
        if bad_rows or overflow:
            why = (f"{bad_rows} of {len(arr)} rows hold NaN or infinite values" if bad_rows else
                   f"{overflow} of {len(arr)} rows exceed {dtype}'s range (import with dtype=float32)")
            out.features[m], out.states[m] = None, f"failed: {key!r}: {why}"
            out.nonfinite.append(key)
            out.problems.append(f"{key}: {why}")
            continue
        real = np.any(arr != 0, axis=1)  # exact zeros: the release's padding, never a real embedding
        out.zero_rows[m] = int((~real).sum())
        cast = cast[real]
        if len(cast) == 0:
            out.features[m], out.states[m] = None, f"absent: {key!r} holds only all-zero rows"
            continue
        if spec.kind == "vector" and len(cast) > 1:
            why = f"a vector feature, but {len(cast)} non-zero rows"
            out.features[m], out.states[m] = None, f"failed: {key!r} is {why}"
            out.problems.append(f"{key}: {why}")
            continue
        out.features[m], out.states[m] = cast, "ok"
    return out
