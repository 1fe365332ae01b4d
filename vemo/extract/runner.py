"""Run extractors over many videos: decode in DataLoader workers, batch the models, write parts.

One process (or each of ``processes`` spawned ones, or each rank of a torchrun/srun launch) takes
its share of the videos, decodes them in DataLoader workers while the models run in the main
thread, passes several videos' frames through each model at once, and commits the results to its
own part store every few videos. Parts are merged into the main store at the end (and at the start
of a rerun, so work committed before a crash or ``kill -9`` is kept). This is the loop; its pieces
are ``jobs`` (decoding), ``pool`` (the extractors) and ``records`` (checks, store records, part stores).
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vemo.extract.base import Extractor, failure_reason
from vemo.extract.jobs import DecodeSettings, Job, start_decoding
from vemo.extract.pool import ExtractorPool, build_extractors, configure_threads, load_extractors
from vemo.extract.records import PartWriter, record_video, store_specs
from vemo.store.format import INDEX, read_json


@dataclass
class Progress:
    """One committed video, sent to whoever draws the progress bar."""

    status: str
    duration: float


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
        events.put(("error", failure_reason(e), traceback.format_exc()))
        raise


def part_prefix(rank: int) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}-{os.getpid()}-r{rank}"


def main_records(store: Path) -> dict[str, dict[str, Any]]:
    path = store / INDEX
    return {r["id"]: r for r in read_json(path, "index")["videos"]} if path.is_file() else {}
