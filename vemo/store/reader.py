"""Read a feature store: validated on open, memory-mapped, O(1) access to any video's features."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vemo.store.format import (FORMAT_NAME, FORMAT_VERSION, INDEX, MANIFEST, SHARDS, WITH_FEATURES,
                               ModalitySpec, StoreError, read_json, shard_files, side_path)


class FeatureStore:
    """A read-only view of a feature store directory.

    Videos are addressed by position in ``ids`` (ok videos in index order) or by id. Arrays are
    memory-mapped lazily, so opening is cheap, data larger than RAM streams, and DataLoader
    workers share pages; the maps are dropped when the store is pickled into a worker.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            hint = "" if self.root.is_dir() else " (the folder does not exist)"
            raise StoreError(f"{manifest_path} is missing{hint}: {self.root} is not a vemo feature "
                             "store, or its extraction never committed anything")
        manifest = read_json(manifest_path, "manifest")
        if manifest.get("format") != FORMAT_NAME:
            raise StoreError(f"{manifest_path} is not a vemo feature store manifest "
                             f"(format={manifest.get('format')!r})")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StoreError(f"{manifest_path} has format version {version!r}, newer than this vemo "
                             f"reads ({FORMAT_VERSION}); upgrade vemo to read this store")
        try:
            self.modalities: dict[str, ModalitySpec] = {
                name: ModalitySpec.from_json(spec) for name, spec in manifest["modalities"].items()}
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"{manifest_path} has a malformed modality entry: {e}") from None
        self.manifest = manifest

        index_path = self.root / INDEX
        records = read_json(index_path, "index")["videos"] if index_path.is_file() else []
        self.records: dict[str, dict[str, Any]] = {}
        for rec in records:
            if rec["id"] in self.records:
                raise StoreError(f"{index_path} lists video {rec['id']!r} twice")
            self.records[rec["id"]] = rec
        ok = [r for r in records if r.get("status") in WITH_FEATURES]
        self.ids: list[str] = [r["id"] for r in ok]
        self.failed: list[dict[str, Any]] = [r for r in records if r.get("status") not in WITH_FEATURES]
        self._position = {vid: i for i, vid in enumerate(self.ids)}
        self._shards = sorted({r["shard"] for r in ok})
        shard_number = {s: k for k, s in enumerate(self._shards)}
        self._shard_of = np.array([shard_number[r["shard"]] for r in ok], dtype=np.int64)
        self._row_of = np.array([r["row"] for r in ok], dtype=np.int64)
        self._offsets: dict[tuple[int, str], np.ndarray] = {}
        self._maps: dict[tuple[int, str], np.ndarray] = {}
        self._validate()

    # ---------------------------------------------------------------- validation
    def _validate(self) -> None:
        """Check every shard's arrays against their offsets and the manifest, headers only."""
        for k, shard in enumerate(self._shards):
            rows = int(self._row_of[self._shard_of == k].max()) + 1
            for name, spec in self.modalities.items():
                data_path, off_path = shard_files(self.root / SHARDS / shard, name)
                for p in (data_path, off_path):
                    if not p.is_file():
                        raise StoreError(f"{p} is missing: the store index refers to shard {shard}")
                offsets = _load(off_path)
                data = _load(data_path, mmap_mode="r")
                if offsets.ndim != 1 or len(offsets) < rows + 1:
                    raise StoreError(f"{off_path} holds {len(offsets)} offsets but the index needs "
                                     f"at least {rows + 1} for shard {shard}")
                if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
                    raise StoreError(f"{off_path} is not a non-decreasing offset array starting at 0")
                if data.ndim != 2 or data.shape[1] != spec.dim:
                    raise StoreError(f"{data_path} has shape {data.shape}, manifest says "
                                     f"[rows, {spec.dim}] for modality {name!r}")
                if int(offsets[-1]) != data.shape[0]:
                    raise StoreError(f"{data_path} has {data.shape[0]} rows but its offsets end at "
                                     f"{int(offsets[-1])}: the arrays disagree")
                if data.dtype != np.dtype(spec.dtype):
                    raise StoreError(f"{data_path} is {data.dtype}, manifest says {spec.dtype}")
                self._offsets[(k, name)] = offsets

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._position

    def position(self, video_id: str) -> int:
        try:
            return self._position[video_id]
        except KeyError:
            status = self.records.get(video_id, {}).get("status")
            why = f" (status {status}: {self.records[video_id].get('reason')})" if status else ""
            raise KeyError(f"video {video_id!r} has no features in {self.root}{why}") from None

    def _data(self, k: int, modality: str) -> np.ndarray:
        key = (k, modality)
        arr = self._maps.get(key)
        if arr is None:
            data_path, _ = shard_files(self.root / SHARDS / self._shards[k], modality)
            arr = self._maps[key] = _load(data_path, mmap_mode="r")
        return arr

    def features(self, video: int | str, modality: str) -> np.ndarray:
        """The [T, D] features of one video (a read-only memory-mapped view; T may be 0)."""
        if modality not in self.modalities:
            raise KeyError(f"unknown modality {modality!r}; this store has "
                           f"{', '.join(sorted(self.modalities))}")
        i = self.position(video) if isinstance(video, str) else int(video)
        k, row = int(self._shard_of[i]), int(self._row_of[i])
        offsets = self._offsets[(k, modality)]
        return self._data(k, modality)[offsets[row]:offsets[row + 1]]

    def spans(self, positions: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the given videos' ``modality`` tokens lie: (shard, first row, token count) per
        position, so a batch is gathered with one indexing per shard instead of one slice per video."""
        if modality not in self.modalities:
            raise KeyError(f"unknown modality {modality!r}; this store has "
                           f"{', '.join(sorted(self.modalities))}")
        positions = np.asarray(positions, dtype=np.int64)
        shards, rows = self._shard_of[positions], self._row_of[positions]
        starts, counts = np.empty(len(positions), np.int64), np.empty(len(positions), np.int64)
        for k in np.unique(shards):
            sel = shards == k
            off = self._offsets[(int(k), modality)]
            starts[sel] = off[rows[sel]]
            counts[sel] = off[rows[sel] + 1] - starts[sel]
        return shards, starts, counts

    def gather(self, shard: int, modality: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` of one shard's ``modality`` array, as one copy (``[len(rows), D]``)."""
        return self._data(int(shard), modality)[rows]

    def lengths(self, modality: str) -> np.ndarray:
        """Number of tokens per ok video, in ``ids`` order, without touching the data arrays."""
        out = np.empty(len(self.ids), dtype=np.int64)
        for k in range(len(self._shards)):
            sel = self._shard_of == k
            off = self._offsets[(k, modality)]
            out[sel] = off[self._row_of[sel] + 1] - off[self._row_of[sel]]
        return out

    def iter_features(self, modality: str, positions: np.ndarray | None = None
                      ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (position, [T, D] features) for the given positions (all ok videos by default)."""
        for i in (range(len(self.ids)) if positions is None else positions):
            yield int(i), self.features(int(i), modality)

    def nonfinite_positions(self, modality: str, chunk_rows: int = 1 << 16) -> np.ndarray:
        """Positions of ok videos with a NaN or infinite value in ``modality`` (one streaming pass)."""
        bad = []
        for k in range(len(self._shards)):
            data, offsets = self._data(k, modality), self._offsets[(k, modality)]
            bad_rows = [start + np.flatnonzero(~np.isfinite(data[start:start + chunk_rows]).all(axis=1))
                        for start in range(0, data.shape[0], chunk_rows)]
            token_rows = np.concatenate(bad_rows) if bad_rows else np.zeros(0, dtype=np.int64)
            if len(token_rows):
                shard_rows = np.unique(np.searchsorted(offsets, token_rows, side="right") - 1)
                in_shard = np.flatnonzero(self._shard_of == k)
                bad.append(in_shard[np.isin(self._row_of[in_shard], shard_rows)])
        return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)

    def side(self, video_id: str) -> dict[str, Any] | None:
        path = side_path(self.root, video_id)
        return read_json(path, "side data") if path.is_file() else None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}  # workers re-map the files instead of receiving copies of the data
        return state

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}[{s.dim}]" for m, s in sorted(self.modalities.items()))
        return f"FeatureStore({str(self.root)!r}, videos={len(self)}, failed={len(self.failed)}, {mods})"


def _load(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise StoreError(f"{path} is not a readable .npy array (truncated or corrupt?): {e}") from None
