"""Write a feature store atomically and resumably.

Videos are buffered in memory and committed a shard at a time: the shard's arrays are written to a
temporary folder that is renamed into place, then index.json is replaced atomically. A crash loses
at most the buffered videos; ``done`` tells a resumed extraction which videos it can skip.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vemo.io import atomic_write_json
from vemo.store.format import (FORMAT_NAME, FORMAT_VERSION, INDEX, MANIFEST, SHARDS, WITH_FEATURES,
                               ModalitySpec, StoreError, read_json, shard_files, side_path)


class FeatureStoreWriter:
    """Create a store, or reopen one to add videos (its modalities must match exactly).

    Use as a context manager, or call ``commit`` yourself; ``add`` never writes a partial video.
    """

    def __init__(self, root: str | Path, modalities: Mapping[str, ModalitySpec | Mapping[str, Any]],
                 shard_size: int = 512, metadata: Mapping[str, Any] | None = None):
        self.root = Path(root)
        self.modalities = {name: spec if isinstance(spec, ModalitySpec) else ModalitySpec(**spec)
                           for name, spec in sorted(modalities.items())}
        if not self.modalities:
            raise ValueError("a feature store needs at least one modality")
        self.shard_size = int(shard_size)
        manifest_path = self.root / MANIFEST
        if manifest_path.is_file():
            self._check_same_manifest(read_json(manifest_path, "manifest"))
            self._records: list[dict[str, Any]] = (read_json(self.root / INDEX, "index")["videos"]
                                                   if (self.root / INDEX).is_file() else [])
            self._remove_orphan_shards()
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(manifest_path, {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "modalities": {n: s.to_json() for n, s in self.modalities.items()},
                "metadata": dict(metadata or {}),
            })
            self._records = []
        self._known = {r["id"] for r in self._records}
        self._buffer: list[tuple[dict[str, Any], dict[str, np.ndarray], Any]] = []
        self._replaced: set[str] = set()  # committed ids whose record the next commit supersedes

    # ---------------------------------------------------------------- resume support
    def _check_same_manifest(self, manifest: dict[str, Any]) -> None:
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise StoreError(f"{self.root / MANIFEST} is from a newer vemo; refusing to write to it")
        have = {n: ModalitySpec.from_json(s) for n, s in manifest.get("modalities", {}).items()}
        if have != self.modalities:
            from vemo.compare import leaf_differences, short

            changed = sorted(set(have) ^ set(self.modalities)
                             | {n for n in set(have) & set(self.modalities) if have[n] != self.modalities[n]})
            said = []
            for name in changed:
                if name not in have or name not in self.modalities:
                    said.append(f"{name} ({'only in the store' if name in have else 'not in the store'})")
                    continue
                diffs = leaf_differences(have[name].to_json(), self.modalities[name].to_json())
                said.append(f"{name} (" + "; ".join(f"{key} is {short(a, 50)} in the store, {short(b, 50)} now"
                                                    for key, a, b in diffs[:3]) + ")")
            raise StoreError(f"{self.root} already holds features made differently for "
                             f"{', '.join(said)}; write to a new store instead of mixing stale and fresh features")

    def _remove_orphan_shards(self) -> None:
        """Shards renamed into place whose index update never happened (a crash) are invisible; drop them."""
        referenced = {r["shard"] for r in self._records if r.get("status") in WITH_FEATURES}
        shard_root = self.root / SHARDS
        if shard_root.is_dir():
            for d in shard_root.iterdir():
                if d.name not in referenced:
                    shutil.rmtree(d, ignore_errors=True)

    def done(self, video_id: str) -> bool:
        """True when the video is already committed (ok or failed) or waiting in the buffer."""
        return video_id in self._known

    def record(self, video_id: str) -> dict[str, Any] | None:
        """The committed index record of a video (None when it has none yet)."""
        for rec in reversed(self._records):
            if rec["id"] == video_id:
                return rec
        return None

    def records(self) -> list[dict[str, Any]]:
        return list(self._records)

    def _claim(self, video_id: str, replace: bool) -> None:
        if video_id in self._known:
            buffered = any(rec["id"] == video_id for rec, _, _ in self._buffer)
            if not replace or buffered:
                raise ValueError(f"video {video_id!r} is already in {self.root}")
            self._replaced.add(video_id)  # re-extracted (retry or changed file): the new record wins
        self._known.add(video_id)

    # ---------------------------------------------------------------- adding videos
    def add(self, video_id: str, features: Mapping[str, np.ndarray | None], *, source: str = "",
            sha256: str = "", duration: float | None = None, side: Any = None, status: str = "ok",
            extra: Mapping[str, Any] | None = None, replace: bool = False) -> None:
        """Buffer one video. A modality left out or given as None is missing for this video.

        ``status`` is "ok" or "partial" (an extractor failed on it); ``extra`` adds fields to the index
        record (per-modality status, decoding notes); ``replace`` supersedes a committed record.
        """
        if status not in WITH_FEATURES:
            raise ValueError(f"status must be one of {WITH_FEATURES}, got {status!r}")
        unknown = set(features) - set(self.modalities)
        if unknown:
            raise ValueError(f"video {video_id!r}: unknown modalities {sorted(unknown)}; the store "
                             f"has {', '.join(self.modalities)}")
        arrays = {}
        for name, spec in self.modalities.items():
            arrays[name] = self._checked(video_id, name, spec, features.get(name))
        self._claim(video_id, replace)
        record = {"id": video_id, "source": source, "sha256": sha256, "duration": duration,
                  "status": status, "reason": None, **dict(extra or {})}
        self._buffer.append((record, arrays, side))
        if len(self._buffer) >= self.shard_size:
            self.commit()

    @staticmethod
    def _checked(video_id: str, name: str, spec: ModalitySpec, value: np.ndarray | None) -> np.ndarray:
        if value is None:
            return np.zeros((0, spec.dim), dtype=spec.dtype)
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != spec.dim:
            raise ValueError(f"video {video_id!r}, modality {name!r}: expected [T, {spec.dim}] "
                             f"features, got shape {tuple(np.shape(value))}")
        if spec.kind == "vector" and arr.shape[0] > 1:
            raise ValueError(f"video {video_id!r}, modality {name!r} is a vector modality: expected "
                             f"one row, got {arr.shape[0]}")
        out = arr.astype(spec.dtype)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).any(axis=1).sum())
            raise ValueError(f"video {video_id!r}, modality {name!r}: {bad} of {len(out)} rows hold "
                             f"NaN or infinite values (after conversion to {spec.dtype}); not stored")
        return out

    def add_failure(self, video_id: str, reason: str, *, source: str = "", sha256: str = "",
                    extra: Mapping[str, Any] | None = None, replace: bool = False) -> None:
        """Record that a video could not be processed, so it is reported and not retried blindly."""
        self._claim(video_id, replace)
        record = {"id": video_id, "source": source, "sha256": sha256, "duration": None,
                  "status": "failed", "reason": str(reason), **dict(extra or {})}
        self._buffer.append((record, {}, None))
        if len(self._buffer) >= self.shard_size:
            self.commit()

    # ---------------------------------------------------------------- committing
    def commit(self) -> None:
        """Make every buffered video visible: shard first, side data next, index last."""
        if not self._buffer:
            return
        ok = [(rec, arrays, side) for rec, arrays, side in self._buffer if rec["status"] in WITH_FEATURES]
        if ok:
            shard = self._next_shard_name()
            shard_root = self.root / SHARDS
            tmp = shard_root / f".tmp-{uuid.uuid4().hex}"
            tmp.mkdir(parents=True)
            try:
                for name in self.modalities:
                    chunks = [arrays[name] for _, arrays, _ in ok]
                    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
                    offsets[1:] = np.cumsum([len(c) for c in chunks])
                    data_path, off_path = shard_files(tmp, name)
                    _save_npy(data_path, np.concatenate(chunks, axis=0))
                    _save_npy(off_path, offsets)
                os.replace(tmp, shard_root / shard)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            for row, (rec, _, side) in enumerate(ok):
                rec["shard"], rec["row"] = shard, row
                if side is not None:
                    atomic_write_json(side_path(self.root, rec["id"]), side)
        for rec, _, side in self._buffer:
            if side is None and rec["id"] in self._replaced:
                side_path(self.root, rec["id"]).unlink(missing_ok=True)  # the old side data is stale
        kept = [r for r in self._records if r["id"] not in self._replaced]
        new_records = kept + [rec for rec, _, _ in self._buffer]
        atomic_write_json(self.root / INDEX, {"videos": new_records})
        self._records = new_records
        self._buffer = []
        self._replaced = set()

    def _next_shard_name(self) -> str:
        shard_root = self.root / SHARDS
        numbers = [int(d.name) for d in shard_root.iterdir() if d.name.isdigit()] if shard_root.is_dir() else []
        return f"{max(numbers, default=-1) + 1:06d}"

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # commit what finished even when the loop stopped on an error or Ctrl-C: finished work is kept
        self.commit()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
