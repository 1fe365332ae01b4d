"""On-disk layout of a feature store and the small helpers both reader and writer share.

    <store>/manifest.json                  format version, modalities (dim, dtype, kind, extractor)
    <store>/index.json                     every video: id, source, sha256, duration, status, reason,
                                           and for ok videos the shard and row holding its features
    <store>/shards/<k>/<modality>.data.npy     float16 [sum of T, D], ragged rows stored flat
    <store>/shards/<k>/<modality>.offsets.npy  int64 [rows + 1]; row r is data[off[r]:off[r+1]]
    <store>/side/<quoted id>.json          side data (transcript, OCR, tags, faces) for display only

Shards are immutable once renamed into place; index.json is replaced atomically after a shard lands,
so a reader never sees a half-written video and an interrupted writer loses only its buffer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vemo.errors import DataError
from vemo.io import read_json as _read_json

FORMAT_NAME = "vemo-feature-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.json"
SHARDS = "shards"
SIDE = "side"
KINDS = ("sequence", "vector")
# "ok": every modality extracted or absent for a reason; "partial": some extractor failed on this video
# (its modality is missing, the others are usable); "failed": nothing usable, see "reason".
WITH_FEATURES = ("ok", "partial")
STATUSES = WITH_FEATURES + ("failed",)
DTYPES = ("float16", "float32")


class StoreError(DataError, RuntimeError):
    """A feature store is missing, from a newer vemo, or inconsistent. The message names the file."""


@dataclass(frozen=True)
class ModalitySpec:
    """What one modality's features are and which extractor made them."""

    dim: int
    kind: str = "sequence"  # "sequence": T tokens per video; "vector": exactly one
    dtype: str = "float16"
    extractor: dict[str, Any] = field(default_factory=dict)  # name, model id, settings

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"modality kind must be one of {KINDS}, got {self.kind!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"modality dtype must be one of {DTYPES}, got {self.dtype!r}")
        if int(self.dim) <= 0:
            raise ValueError(f"modality dim must be positive, got {self.dim}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModalitySpec":
        return cls(dim=int(data["dim"]), kind=data.get("kind", "sequence"),
                   dtype=data.get("dtype", "float16"), extractor=dict(data.get("extractor", {})))


def side_path(root: Path, video_id: str) -> Path:
    # ids such as "anger/1000" must not create folders; quoting keeps them readable and unique
    return root / SIDE / (quote(video_id, safe="") + ".json")


def shard_files(shard_dir: Path, modality: str) -> tuple[Path, Path]:
    return shard_dir / f"{modality}.data.npy", shard_dir / f"{modality}.offsets.npy"


def read_json(path: Path, what: str) -> Any:
    return _read_json(path, what, error=StoreError)
