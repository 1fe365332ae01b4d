"""Decoding many videos for the extractors: a ``Job`` per file, the ``DecodeSettings`` the
extractors need, and the DataLoader whose (spawned) workers decode ahead of the models."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from vemo.extract.base import DecodedVideo, Extractor, failure_reason, file_sha256
from vemo.extract.inputs import VideoInput


@dataclass(frozen=True)
class Job:
    video: VideoInput
    size: int
    mtime: float
    replace: bool = False  # the main store already has a record for this id (retry or changed file)


@dataclass
class DecodeSettings:
    num_frames: int = 16
    fps: float | None = None
    max_side: int = 960
    max_audio_seconds: float | None = None
    sample_rates: tuple[int, ...] = (16000,)
    need_frames: bool = True


@dataclass
class Decoded:
    """What a DataLoader worker hands to the models: a decoded video or the reason it failed."""

    job: Job
    video: DecodedVideo | None
    sha256: str
    error: str | None = None
    seconds: float = 0.0  # wall time spent decoding


class DecodeDataset:
    """A map-style dataset: index -> Decoded. Lives in DataLoader workers (spawned, picklable)."""

    def __init__(self, jobs: Sequence[Job], settings: DecodeSettings, hash_files: bool = True):
        self.jobs = list(jobs)
        self.settings = settings
        self.hash_files = hash_files  # the store records each file's sha256; prediction needs none

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> Decoded:
        from vemo.extract.decode import decode

        job = self.jobs[i]
        start = time.perf_counter()
        try:
            sha = file_sha256(job.video.path) if self.hash_files else ""
        except OSError as e:
            return Decoded(job, None, "", f"cannot read the file: {e}")
        s = self.settings
        try:
            video = decode(job.video.path, job.video.id, num_frames=s.num_frames, fps=s.fps,
                           sample_rates=s.sample_rates, max_side=s.max_side,
                           max_audio_seconds=s.max_audio_seconds, need_frames=s.need_frames)
        except Exception as e:  # noqa: BLE001 - any decoder failure is this video's failure, not the run's
            return Decoded(job, None, sha, failure_reason(e), time.perf_counter() - start)
        return Decoded(job, video, sha, None, time.perf_counter() - start)


def _collate(batch: list[Decoded]) -> list[Decoded]:
    return batch


def decode_settings_for(extractors: Mapping[str, Extractor], base: DecodeSettings) -> DecodeSettings:
    rates = sorted({int(e.sample_rate) for e in extractors.values() if e.sample_rate})
    need_frames = any(e.needs_frames for e in extractors.values())
    return DecodeSettings(num_frames=base.num_frames, fps=base.fps, max_side=base.max_side,
                          max_audio_seconds=base.max_audio_seconds,
                          sample_rates=tuple(rates) or (16000,), need_frames=need_frames)


def start_decoding(jobs: Sequence[Job], decode: DecodeSettings, video_batch: int, workers: int,
                   hash_files: bool = True):
    """An iterator over batches of decoded videos. Its DataLoader workers start now, so they can
    import and decode while the caller is still loading models."""
    from torch.utils.data import DataLoader

    workers = int(workers)
    loader = DataLoader(DecodeDataset(jobs, decode, hash_files), batch_size=int(video_batch), shuffle=False,
                        num_workers=workers, collate_fn=_collate,
                        # spawn: forking a process that already runs ONNX/CTranslate2 thread pools can hang
                        multiprocessing_context="spawn" if workers > 0 else None,
                        prefetch_factor=2 if workers > 0 else None)
    return iter(loader)
