"""Run extractors over many videos: decode in DataLoader workers, batch the models, write parts.

One process (or each of ``processes`` spawned ones, or each rank of a torchrun/srun launch) takes
its share of the videos, decodes them in DataLoader workers while the models run in the main
thread, passes several videos' frames through each model at once, and commits the results to its
own part store every few videos. Parts are merged into the main store at the end (and at the start
of a rerun, so work committed before a crash or ``kill -9`` is kept).
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vemo.extract.base import DecodedVideo, Extracted, Extractor, file_sha256
from vemo.extract.inputs import VideoInput
from vemo.store.format import INDEX, ModalitySpec, read_json
from vemo.store.merge import PARTS
from vemo.store.writer import FeatureStoreWriter


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


@dataclass
class Progress:
    """One committed video, sent to whoever draws the progress bar."""

    status: str
    duration: float


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
            return Decoded(job, None, sha, _reason(e), time.perf_counter() - start)
        return Decoded(job, video, sha, None, time.perf_counter() - start)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _collate(batch: list[Decoded]) -> list[Decoded]:
    return batch


def decode_settings_for(extractors: Mapping[str, Extractor], base: DecodeSettings) -> DecodeSettings:
    rates = sorted({int(e.sample_rate) for e in extractors.values() if e.sample_rate})
    need_frames = any(e.needs_frames for e in extractors.values())
    return DecodeSettings(num_frames=base.num_frames, fps=base.fps, max_side=base.max_side,
                          max_audio_seconds=base.max_audio_seconds,
                          sample_rates=tuple(rates) or (16000,), need_frames=need_frames)


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


def configure_threads(extractors: Mapping[str, Extractor], threads: int) -> int:
    """Split ``threads`` cores between extractors running side by side and their own thread pools.

    Small models scale poorly over intra-op threads (2 threads gave 1.4x here), so on few cores
    vemo runs several extractors at once, each single-threaded, instead of one after the other.
    Returns how many extractors run at once. Only extractors left at their automatic thread count
    (0) are changed. Call before the models load.
    """
    threads = max(1, int(threads))
    concurrent = max(1, min(threads, len(extractors)))
    per_extractor = max(1, threads // concurrent)
    own_sources = [s for ex in extractors.values() if ex.derives_from for s in ex.active_sources().values()]
    for ex in [*extractors.values(), *own_sources]:
        for attr in ("threads", "cpu_threads"):
            if getattr(ex, attr, None) == 0:
                setattr(ex, attr, per_extractor)
    import torch
    torch.set_num_threads(per_extractor)
    return concurrent


class ExtractorPool:
    """Runs every extractor on a batch, ``concurrent`` at a time (threads: the runtimes release the
    GIL), longest first by the previous batch's timings so the threads finish together."""

    def __init__(self, extractors: Mapping[str, Extractor], concurrent: int):
        from concurrent.futures import ThreadPoolExecutor

        self.extractors = {n: ex for n, ex in extractors.items() if not ex.derives_from}
        self.derived = {n: ex for n, ex in extractors.items() if ex.derives_from}
        self.concurrent = max(1, int(concurrent))
        self._pool = ThreadPoolExecutor(self.concurrent) if self.concurrent > 1 else None
        self._seconds = {name: 0.0 for name in self.extractors}

    def _timed(self, name: str, videos: list[DecodedVideo]) -> list[Extracted | BaseException]:
        start = time.perf_counter()
        try:
            return run_extractor(self.extractors[name], videos)
        finally:
            self._seconds[name] = time.perf_counter() - start

    def run(self, videos: list[DecodedVideo]) -> dict[str, list[Extracted | BaseException]]:
        order = sorted(self.extractors, key=lambda n: -self._seconds[n])
        if self._pool is None:
            results = {name: self._timed(name, videos) for name in order}
        else:
            futures = {name: self._pool.submit(self._timed, name, videos) for name in order}
            results = {name: futures[name].result() for name in self.extractors}
        for name, ex in self.derived.items():  # after the others: they read their results
            results[name] = run_derived(ex, videos, results)
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def run_extractor(extractor: Extractor, videos: list[DecodedVideo]) -> list[Extracted | BaseException]:
    """Run one extractor on a batch; if the batch fails, retry video by video to find the culprit."""
    if not videos:
        return []
    try:
        out = extractor.extract(videos)
        if len(out) != len(videos):
            raise RuntimeError(f"{type(extractor).__name__} returned {len(out)} results for "
                               f"{len(videos)} videos")
        return list(out)
    except Exception:  # noqa: BLE001
        return [_capture(extractor, v) for v in videos]


def run_derived(extractor: Extractor, videos: list[DecodedVideo],
                results: Mapping[str, list[Extracted | BaseException]]) -> list[Extracted | BaseException]:
    """A derived extractor on a batch, from the results at hand; a failed batch is retried per video."""
    if not videos:
        return []
    shared = {m: results[m] for m in extractor.derives_from if m in results}
    try:
        return list(extractor.derive(videos, shared))
    except Exception:  # noqa: BLE001
        out: list[Extracted | BaseException] = []
        for i, video in enumerate(videos):
            try:
                out.append(extractor.derive([video], {m: [r[i]] for m, r in shared.items()})[0])
            except Exception as e:  # noqa: BLE001
                e.__vemo_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
                out.append(e)
        return out


def _capture(extractor: Extractor, video: DecodedVideo) -> Extracted | BaseException:
    try:
        return extractor.extract([video])[0]
    except Exception as e:  # noqa: BLE001
        e.__vemo_traceback__ = traceback.format_exc()  # type: ignore[attr-defined]
        return e


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
            states[name] = f"failed: {_reason(result)}"
            log(f"{video_id}: {name} failed: {getattr(result, '__vemo_traceback__', _reason(result))}")
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


@dataclass
class WorkerConfig:
    """Everything a (possibly spawned) extraction process needs; plain data, picklable."""

    store: str
    jobs: list[Job]
    extractor_options: dict[str, dict[str, Any]]
    decode: DecodeSettings
    video_batch: int = 8
    decode_workers: int = 1
    commit_every: int = 16
    part_size: int = 2048
    device: str = "cpu"
    threads: int | None = None
    concurrent: int | None = None  # extractors running at once; None: decided by configure_threads
    part_prefix: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    log_file: str | None = None


def build_extractors(options: Mapping[str, Mapping[str, Any]], device: str) -> dict[str, Extractor]:
    from vemo.extract import create

    extractors = {}
    for modality, opts in sorted(options.items()):
        opts = dict(opts)
        name = opts.pop("name")
        with model_errors(modality, name):
            ex = create(name, device=device, **opts)
        if getattr(ex, "modality", modality) != modality:
            from vemo.errors import ConfigError
            raise ConfigError(f"extract.extractors.{modality}: extractor {name!r} makes "
                              f"{ex.modality!r} features, not {modality!r}")
        extractors[modality] = ex
    share_sources(extractors)
    return extractors


def share_sources(extractors: Mapping[str, Extractor]) -> None:
    """Derived extractors (affect) use the results of the other extractors of the same run."""
    for ex in extractors.values():
        if ex.derives_from:
            ex.share(extractors)


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


@contextmanager
def model_errors(modality: str, name: str):
    """A model that cannot be read or downloaded is a user-facing error naming the extractor."""
    from vemo.errors import ConfigError, VemoError
    try:
        yield
    except (VemoError, ConfigError):
        raise
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VemoError(f"extract.extractors.{modality} ({name}): its model could not be loaded: {first} "
                        "(the standard profile downloads from the model hubs; without that network use "
                        "extract=offline)") from e


def load_extractors(extractors: Mapping[str, Extractor]) -> None:
    for modality, ex in extractors.items():
        with model_errors(modality, type(ex).__name__):
            ex.ensure_loaded()


def extract_jobs(cfg: WorkerConfig, report: Callable[[Progress], None],
                 extractors: dict[str, Extractor] | None = None, batches=None) -> None:
    """The per-process loop: decode in workers, run every extractor on each batch, commit parts."""
    if not cfg.jobs:
        return
    if batches is None:
        batches = start_decoding(cfg.jobs, cfg.decode, cfg.video_batch, cfg.decode_workers)
    if extractors is None:
        extractors = build_extractors(cfg.extractor_options, cfg.device)
    concurrent = configure_threads(extractors, cfg.threads or 1) if cfg.concurrent is None else cfg.concurrent
    load_extractors(extractors)
    pool = ExtractorPool(extractors, concurrent)
    specs = store_specs(extractors, cfg.decode)
    log = _logger(cfg.log_file)
    writer = PartWriter(Path(cfg.store), cfg.part_prefix, specs, cfg.metadata, cfg.commit_every,
                        cfg.part_size)
    try:
        for batch in batches:
            videos = [item.video for item in batch if item.video is not None]
            per_modality = pool.run(videos)
            k = 0  # position among the decoded videos of the batch
            for item in batch:
                results: dict[str, Any] = {}
                if item.video is not None:
                    results = {name: out[k] for name, out in per_modality.items()}
                    k += 1
                if item.error:
                    log(f"{item.job.video.id}: not decoded: {item.error}")
                status = record_video(writer, item, results, specs, log)
                report(Progress(status, item.video.duration if item.video is not None else 0.0))
    finally:
        pool.close()
        writer.close()


def _logger(path: str | None) -> Callable[[str], None]:
    def log(message: str) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(message.rstrip() + "\n")
    return log


def spawned_worker(cfg: WorkerConfig, events: Any) -> None:
    """Entry point of a spawned extraction process: progress goes back through a queue."""
    try:
        extract_jobs(cfg, events.put)
    except BaseException as e:  # noqa: BLE001 - the parent reports it
        events.put(("error", _reason(e), traceback.format_exc()))
        raise


def part_prefix(rank: int) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}-{os.getpid()}-r{rank}"


def main_records(store: Path) -> dict[str, dict[str, Any]]:
    path = store / INDEX
    return {r["id"]: r for r in read_json(path, "index")["videos"]} if path.is_file() else {}
