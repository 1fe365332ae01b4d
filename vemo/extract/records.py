"""From extractor results to the store: the manifest entries of a run, each video's results checked
(one modality failing is that modality's state, never the whole video's crash), one video -> one
store record, written to this process's part stores."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vemo.extract.base import Extracted, Extractor, failure_reason
from vemo.extract.jobs import Decoded, DecodeSettings
from vemo.store.format import ModalitySpec
from vemo.store.merge import PARTS
from vemo.store.writer import FeatureStoreWriter


def store_specs(extractors: Mapping[str, Extractor], decode: DecodeSettings) -> dict[str, ModalitySpec]:
    """The manifest entries: each extractor's spec plus the decoding settings that shape its input."""
    specs = {}
    for name, ex in sorted(extractors.items()):
        spec = ex.spec()
        sampling = {"num_frames": decode.num_frames, "fps": decode.fps, "max_side": decode.max_side,
                    "max_audio_seconds": decode.max_audio_seconds}
        specs[name] = ModalitySpec(dim=spec.dim, kind=spec.kind, dtype=spec.dtype,
                                   extractor={**spec.extractor, "decode": sampling})
    return specs


class PartWriter:
    """Writes this process's results into ``<store>/parts/<prefix>-NNN``, rotating every ``part_size``
    videos so that no index grows without bound."""

    def __init__(self, store: Path, prefix: str, specs: dict[str, ModalitySpec], metadata: dict[str, Any],
                 commit_every: int, part_size: int):
        self.store, self.prefix, self.specs, self.metadata = store, prefix, specs, metadata
        self.commit_every, self.part_size = int(commit_every), int(part_size)
        self._seq, self._count, self._writer = 0, 0, None
        self._last_commit = time.monotonic()

    def _current(self) -> FeatureStoreWriter:
        if self._writer is None or self._count >= self.part_size:
            self.close()
            path = self.store / PARTS / f"{self.prefix}-{self._seq:03d}"
            self._seq += 1
            self._count = 0
            self._writer = FeatureStoreWriter(path, self.specs, shard_size=self.commit_every,
                                              metadata=self.metadata)
        return self._writer

    def add(self, **kwargs: Any) -> None:
        w = self._current()
        if kwargs.pop("failed", False):
            w.add_failure(**kwargs)
        else:
            w.add(**kwargs)
        self._count += 1
        # the writer commits by itself every `commit_every` videos; slow videos are committed after
        # 30 seconds too, so a kill loses at most a few videos or half a minute of work
        if time.monotonic() - self._last_commit > 30:
            self.commit()

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer = None


@dataclass
class VideoFeatures:
    """One decoded video's extractor results, checked: features per modality (None when absent or
    failed), each modality's state ("ok", "absent: why", "failed: why") and the side data."""

    features: dict[str, np.ndarray | None]
    states: dict[str, str]
    side: dict[str, Any]

    @property
    def failed(self) -> list[str]:
        return [m for m, s in self.states.items() if s.startswith("failed")]


def check_results(video_id: str, results: Mapping[str, Extracted | BaseException],
                  specs: Mapping[str, ModalitySpec], log: Callable[[str], None]) -> VideoFeatures:
    """Validate what each extractor returned for one video (shape, dim, finite after rounding to
    the store's dtype); a failure becomes that modality's state, never the whole video's crash."""
    features: dict[str, np.ndarray | None] = {}
    states: dict[str, str] = {}
    side: dict[str, Any] = {}
    for name in specs:
        result = results[name]
        if isinstance(result, BaseException):
            states[name] = f"failed: {failure_reason(result)}"
            log(f"{video_id}: {name} failed: {getattr(result, '__vemo_traceback__', failure_reason(result))}")
            features[name] = None
            continue
        if result.side is not None:
            side[name] = result.side
        if result.features is None:
            states[name] = f"absent: {result.absent or 'no signal'}"
            features[name] = None
            continue
        arr = np.asarray(result.features, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.size and not np.isfinite(arr.astype(specs[name].dtype)).all():
            states[name] = "failed: non-finite features (NaN or overflow)"
            features[name] = None
            continue
        if arr.ndim != 2 or arr.shape[1] != specs[name].dim or arr.shape[0] == 0:
            states[name] = f"failed: extractor returned shape {tuple(arr.shape)}, expected [T>0, {specs[name].dim}]"
            features[name] = None
            continue
        features[name] = arr
        states[name] = "ok"
    return VideoFeatures(features, states, side)


def record_video(writer: PartWriter, item: Decoded, results: Mapping[str, Extracted | BaseException],
                 specs: Mapping[str, ModalitySpec], log: Callable[[str], None]) -> str:
    """Turn one video's decode result and extractor results into a store record; returns its status."""
    job = item.job
    base_extra = {"size": job.size, "mtime": job.mtime, "extracted_at": time.time()}
    common = {"source": job.video.path, "sha256": item.sha256, "replace": job.replace}
    if item.video is None:
        writer.add(video_id=job.video.id, reason=f"decode: {item.error}", failed=True,
                   extra={**base_extra, "modalities": {m: "failed: not decoded" for m in specs}}, **common)
        return "failed"
    video = item.video
    checked = check_results(job.video.id, results, specs, log)
    states, side = checked.states, checked.side
    failed = checked.failed
    extra = {**base_extra, "modalities": states, "notes": list(video.notes),
             "header_duration": video.header_duration}
    if failed and len(failed) == len(states):
        writer.add(video_id=job.video.id, reason="every extractor failed: " + "; ".join(
            f"{m}: {states[m][8:]}" for m in failed), failed=True, extra=extra, **common)
        return "failed"
    status = "partial" if failed else "ok"
    if video.notes:
        side["decode"] = {"notes": list(video.notes)}
    writer.add(video_id=job.video.id, features=checked.features, duration=video.duration,
               side=side or None, status=status, extra=extra, **common)
    return status
