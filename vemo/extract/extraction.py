"""``python -m vemo.extract``'s work: find videos, plan what is left, run the processes, merge, sum up."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from vemo.errors import ConfigError
from vemo.extract.base import MODALITIES, file_sha256
from vemo.extract.inputs import VideoInput, find_videos
from vemo.extract.jobs import DecodeSettings, Job, decode_settings_for, start_decoding
from vemo.extract.pool import build_extractors, configure_threads, load_extractors
from vemo.extract.records import store_specs
from vemo.extract.runner import (
    Progress,
    WorkerConfig,
    extract_jobs,
    main_records,
    part_prefix,
    spawned_worker,
)
from vemo.io import atomic_write_json
from vemo.store.merge import merge_parts
from vemo.store.writer import FeatureStoreWriter


@dataclass
class ExtractionResult:
    store: Path
    total: int                       # videos in the input
    skipped: int                     # already done with the same settings and file
    processed: int                   # extracted in this run
    statuses: dict[str, int] = field(default_factory=dict)  # of this run's videos
    seconds_of_video: float = 0.0
    wall_seconds: float = 0.0        # the extraction loop, model loading excluded
    load_seconds: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)  # main-store records of every input video
    modalities: list[str] = field(default_factory=list)
    rank: int = 0                    # of a torchrun / srun launch; only rank 0 prints the summary

    @property
    def real_time_factor(self) -> float:
        return self.seconds_of_video / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def problems(self) -> int:
        """Input videos that are failed or partial in the store (this run's or an earlier one's)."""
        return sum(r.get("status") in ("failed", "partial") for r in self.records)


def profile_extractors(profile: str, overrides: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Every extractor of an extraction profile (``offline``, ``standard``) with its options, composed
    as ``python -m vemo.extract extract=PROFILE`` would (``overrides``: more of its command line)."""
    from omegaconf import OmegaConf

    from vemo.config import load_config

    cfg = load_config(["input=-", "out=-", f"extract={profile}", *overrides], config_name="extract")
    return selected_extractors(OmegaConf.to_container(cfg, resolve=True))


def selected_extractors(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    profile = dict(cfg["extract"]["extractors"] or {})
    profile = {m: dict(o) for m, o in profile.items() if o is not None}
    for m, opts in profile.items():
        if m not in MODALITIES:
            raise ConfigError(f"extract.extractors.{m}: unknown modality; vemo's modalities are "
                              f"{', '.join(MODALITIES)}")
        if not opts.get("name"):
            raise ConfigError(f"extract.extractors.{m} names no extractor (set its name)")
    wanted = cfg.get("modalities")
    if wanted:
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        unknown = [m for m in wanted if m not in profile]
        if unknown:
            raise ConfigError(f"modalities={wanted}: {', '.join(unknown)} not in the "
                              f"{cfg['extract'].get('name', '')} profile ({', '.join(sorted(profile))})")
        chosen = {m: profile[m] for m in wanted}
    else:
        chosen = dict(profile)
    for opts in chosen.values():  # a derived extractor runs the profile's sources it is not given
        if opts.get("name") == "affect" and not opts.get("source_options"):
            opts["source_options"] = {m: o for m, o in profile.items() if m != "affect"}
    profile = chosen
    if not profile:
        raise ConfigError("no extractor selected: the profile is empty")
    return profile


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def plan(videos: list[VideoInput], store: Path, retry_failed: bool) -> tuple[list[Job], int]:
    """Jobs for the videos that are not done yet; the count of those skipped."""
    done = main_records(store)
    jobs, skipped = [], 0
    for v in videos:
        try:
            st = os.stat(v.path)
        except OSError:  # gone since it was listed: decoding will record why it failed
            jobs.append(Job(v, -1, -1.0, replace=v.id in done))
            continue
        rec = done.get(v.id)
        if rec is not None:
            unchanged = (rec.get("source") == v.path and rec.get("size") == st.st_size
                         and rec.get("mtime") == st.st_mtime)
            if not unchanged and rec.get("sha256"):
                unchanged = file_sha256(v.path) == rec["sha256"]  # moved or touched, same content
            if unchanged and not (retry_failed and rec.get("status") == "failed"):
                skipped += 1
                continue
        jobs.append(Job(v, st.st_size, st.st_mtime, replace=rec is not None))
    return jobs, skipped


def write_folder_labels(videos: list[VideoInput], store: Path) -> Path:
    """labels.csv + classes.txt beside the store, one class per parent folder."""
    from vemo.data.labels import write_labels

    labels, _ = write_labels(store.resolve().parent, {v.id: v.label for v in videos}, sorted({v.label for v in videos}))
    return labels


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of a torchrun / srun launch; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    return rank, world


def _barrier(world: int) -> None:
    if world <= 1 or "MASTER_ADDR" not in os.environ:
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()


def check_settings(cfg: Mapping[str, Any]) -> None:
    """Every number of the command's config, checked before any video is touched."""
    from vemo.options import non_negative_int, number_in, positive_int

    for key in ("processes", "video_batch", "commit_every", "part_size", "num_frames"):
        positive_int(cfg.get(key), key)
    non_negative_int(cfg.get("decode_workers"), "decode_workers")
    positive_int(cfg.get("max_side"), "max_side")
    if cfg.get("max_side") < 32:
        raise ConfigError(f"max_side must be at least 32 pixels, got {cfg.get('max_side')}")
    for key in ("fps", "max_audio_seconds"):
        if cfg.get(key) is not None:
            number_in(cfg.get(key), key, 0, float("inf"), low_open=True)
    if cfg.get("threads") is not None:
        positive_int(cfg.get("threads"), "threads")


def run_extraction(cfg: Mapping[str, Any], log_file: str | None = None) -> ExtractionResult:
    check_settings(cfg)
    store = Path(str(cfg["out"])).expanduser()
    videos = find_videos(cfg["input"])
    options = selected_extractors(cfg)
    device = resolve_device(str(cfg.get("device", "auto")))
    processes = int(cfg["processes"])
    rank, world = distributed_rank()
    if world > 1 and device == "cuda":  # torchrun / srun: one GPU per local rank
        device = f"cuda:{os.environ.get('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))}"

    if cfg.get("labels") == "folders" and rank == 0:
        path = write_folder_labels(videos, store)
        print(f"labels: {path} ({len({v.label for v in videos})} classes from folder names)")
    elif cfg.get("labels") not in (None, "folders"):
        raise ConfigError(f"labels={cfg.get('labels')!r}: use labels=folders or leave it null")

    # extractors are built without their models: what they need from decoding is declared up front
    extractors = build_extractors(options, device)
    decode = decode_settings_for(extractors, DecodeSettings(
        num_frames=int(cfg["num_frames"]), fps=cfg.get("fps"),
        max_side=int(cfg["max_side"]), max_audio_seconds=cfg.get("max_audio_seconds")))

    # finish what an earlier, killed run committed, then plan what is left
    if rank == 0:
        merge_parts(store)
    _barrier(world)
    jobs, skipped = plan(videos, store, bool(cfg.get("retry_failed")))
    mine = jobs[rank::world]
    cpu = os.cpu_count() or 1
    worker = dict(extractor_options=options, decode=decode, video_batch=int(cfg["video_batch"]),
                  decode_workers=int(cfg["decode_workers"]), commit_every=int(cfg["commit_every"]),
                  part_size=int(cfg["part_size"]),
                  threads=cfg.get("threads") or max(1, cpu // max(1, processes)),
                  metadata={"profile": cfg["extract"].get("name")}, log_file=log_file)
    batches = None
    if mine and processes == 1:
        # decoding workers start importing and decoding while the models load
        batches = start_decoding(mine, decode, worker["video_batch"], worker["decode_workers"])

    load_start = time.perf_counter()
    concurrent = configure_threads(extractors, worker["threads"])
    load_extractors(extractors)
    specs = store_specs(extractors, decode)
    load_seconds = time.perf_counter() - load_start
    if rank == 0:  # the store refuses other settings before any work is done
        FeatureStoreWriter(store, specs, metadata={"profile": cfg["extract"].get("name")})
    _barrier(world)

    start = time.perf_counter()
    seconds, statuses = 0.0, {}
    if mine:
        from tqdm import tqdm
        bar = tqdm(total=len(mine), desc=f"extracting{f' (rank {rank})' if world > 1 else ''}",
                   unit="video", dynamic_ncols=True, file=sys.stderr)

        def report(p: Progress) -> None:
            nonlocal seconds
            seconds += p.duration
            statuses[p.status] = statuses.get(p.status, 0) + 1
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(1)
            bar.set_postfix_str(f"{bar.n / elapsed:.2f} videos/s, {seconds / elapsed:.1f}x real time, "
                                f"{statuses.get('failed', 0)} failed", refresh=False)

        try:
            if processes == 1:
                extract_jobs(WorkerConfig(store=str(store), jobs=mine, device=device, concurrent=concurrent,
                                          part_prefix=part_prefix(rank), **worker), report, extractors, batches)
            else:
                del extractors  # the spawned processes load their own models
                _run_processes(store, mine, processes, device, worker, report)
        finally:
            bar.close()
    wall = time.perf_counter() - start

    _barrier(world)
    if rank == 0:
        merge_parts(store)
    _barrier(world)  # every rank reads the merged store
    records = main_records(store)
    chosen = [records[v.id] for v in videos if v.id in records]
    return ExtractionResult(store=store, total=len(videos), skipped=skipped, processed=len(mine),
                            statuses=statuses, seconds_of_video=seconds, wall_seconds=wall,
                            load_seconds=load_seconds, records=chosen, modalities=sorted(specs), rank=rank)


def _run_processes(store: Path, jobs: list[Job], processes: int, device: str, worker: dict[str, Any],
                   report) -> None:
    import multiprocessing as mp
    import queue as queue_module

    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    n_gpu = _cuda_count() if device.startswith("cuda") and ":" not in device else 0
    procs = []
    for k in range(processes):
        dev = f"cuda:{k % n_gpu}" if n_gpu else device
        cfg = WorkerConfig(store=str(store), jobs=jobs[k::processes], device=dev,
                           part_prefix=part_prefix(k), **worker)
        p = ctx.Process(target=spawned_worker, args=(cfg, events), daemon=False)
        p.start()
        procs.append(p)
    errors = []
    try:
        while True:
            try:
                event = events.get(timeout=0.5)
            except queue_module.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if isinstance(event, Progress):
                report(event)
            elif isinstance(event, tuple) and event and event[0] == "error":
                errors.append(event[1])
        # drain what arrived after the last process ended
        while True:
            try:
                event = events.get_nowait()
            except queue_module.Empty:
                break
            if isinstance(event, Progress):
                report(event)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    dead = [p.exitcode for p in procs if p.exitcode]
    if errors or dead:
        from vemo.errors import VemoError
        raise VemoError(f"{len(dead) or len(errors)} of {processes} extraction processes failed"
                        + (f": {errors[0]}" if errors else f" (exit codes {dead})")
                        + "; what they committed is kept, rerun to finish")


def _cuda_count() -> int:
    import torch
    return torch.cuda.device_count()


def write_summary_json(result: ExtractionResult, path: Path) -> None:
    atomic_write_json(path, {
        "store": str(result.store), "videos": result.total, "skipped": result.skipped,
        "processed": result.processed, "statuses": result.statuses,
        "seconds_of_video": round(result.seconds_of_video, 3), "wall_seconds": round(result.wall_seconds, 3),
        "load_seconds": round(result.load_seconds, 3),
        "real_time_factor": round(result.real_time_factor, 3)})
