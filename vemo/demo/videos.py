"""Labelled demo VIDEOS whose Ekman class is planted in perceivable channels.

Run ``python -m vemo.demo.videos OUT``. Every clip carries its class, independently with
probability ~0.6 each (at least one always), in four channels that vemo's extractors can see:

* speech: an emotional sentence spoken by espeak-ng (Whisper ASR + sentence encoder);
* ocr: an emotional word or phrase drawn large on the frames (OCR + sentence encoder);
* colour: the palette of the moving shapes and background (image model on frames);
* sound: a synthesised sound pattern in the audio track (YAMNet audio events).

A channel that does not carry the class shows neutral content (a neutral sentence or silence, a
neutral word or no text, a grey/beige palette, soft pink noise), never another class's signal.
Val/test clips use only held-out sentences and words, so the text channels measure generalisation.

Layout of OUT: ``videos/<class>/<nnnn>.mp4`` (h264 + AAC mono 16 kHz; id ``<class>/<nnnn>``),
``labels.csv``, ``classes.txt``, ``splits/{train,val,test}.txt``, ``channels.csv`` (which channels
carry the class and the sentence/word used) and ``generator.json`` (the settings, so a rerun with
other settings is refused instead of mixing clips). Everything is a pure function of the seed;
clips are written under ``OUT/.tmp`` and renamed into place, and clips already present are skipped.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from vemo.data.labels import write_labels
from vemo.demo.encode import encode_mp4
from vemo.demo.features import CLASSES
from vemo.demo.plan import CHANNELS, SPLITS, VideoPlan, plan_videos
from vemo.demo.render import render_frames
from vemo.demo.sounds import render_audio
from vemo.errors import DataError
from vemo.io import csv_text, write_text_if_changed

GENERATOR_VERSION = 1  # bump whenever the generated clips change


def video_path(out: Path, video_id: str) -> Path:
    return out / "videos" / f"{video_id}.mp4"


def render_video(plan: VideoPlan, out: Path, tmp_dir: Path) -> None:
    """Render one clip into ``tmp_dir`` and rename it into place."""
    final = video_path(out, plan.id)
    tmp = tmp_dir / f"{plan.id.replace('/', '-')}-{uuid.uuid4().hex}.mp4"
    try:
        encode_mp4(tmp, render_frames(plan), render_audio(plan, tmp_dir), plan)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _render_job(job: tuple[VideoPlan, Path, Path]) -> str:
    render_video(*job)
    return job[0].id


# ------------------------------------------------------------------------------------ the folder

CHANNEL_COLUMNS = ["id", "label", "split", *CHANNELS, "speech_text", "ocr_text", "voice", "speech_start",
                   "palette", "sound_pattern"]


def write_metadata(out: Path, plans: list[VideoPlan]) -> None:
    write_labels(out, {p.id: p.label for p in plans}, CLASSES)
    for split in SPLITS:
        ids = sorted(p.id for p in plans if p.split == split)
        write_text_if_changed(out / "splits" / f"{split}.txt", "".join(f"{vid}\n" for vid in ids))
    rows = []
    for p in plans:
        row = asdict(p)
        row.update({name: int(row[name]) for name in CHANNELS})
        rows.append([row[col] for col in CHANNEL_COLUMNS])
    write_text_if_changed(out / "channels.csv", csv_text([CHANNEL_COLUMNS, *rows]))


def check_settings(out: Path, settings: dict) -> None:
    """Refuse to add clips made with other settings to a folder (they would not match its labels)."""
    path = out / "generator.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            raise DataError(f"{out} was generated with {old}, not {settings}; use another folder")
    else:
        write_text_if_changed(path, json.dumps(settings, indent=1) + "\n")


def generate_demo_videos(out: str | Path, num_videos: int = 300, seconds: float = 4.0, seed: int = 0,
                         size: tuple[int, int] = (320, 240), fps: int = 12, workers: int = 2,
                         progress: bool = True) -> dict:
    """Write the demo videos and their metadata into ``out``; return a summary (see ``main``)."""
    if num_videos < len(CLASSES):
        raise DataError(f"need at least {len(CLASSES)} videos (one per class), got {num_videos}")
    if size[0] % 2 or size[1] % 2 or min(size) < 32:
        raise DataError(f"size must be even and at least 32x32 for h264, got {size[0]}x{size[1]}")
    if seconds <= 0 or fps <= 0:
        raise DataError("seconds and fps must be positive")
    if shutil.which("espeak-ng") is None:
        raise DataError("espeak-ng is not installed (apt-get install espeak-ng)")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, {"version": GENERATOR_VERSION, "num_videos": num_videos, "seconds": seconds,
                         "seed": seed, "size": list(size), "fps": fps})
    plans = plan_videos(num_videos, seed, seconds, size, fps)
    todo = [p for p in plans if not video_path(out, p.id).is_file()]
    tmp_dir = out / ".tmp" / uuid.uuid4().hex
    tmp_dir.mkdir(parents=True)
    try:
        jobs = [(p, out, tmp_dir) for p in todo]
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="demo videos", unit="clip", disable=not progress)
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                _render_job(job)
                bar.update()
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # fork where there is one: a spawned worker would import vemo.demo again, which takes
            # seconds; nothing here holds threads or locks a forked child could trip on
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for _ in pool.map(_render_job, jobs, chunksize=1):
                    bar.update()
        bar.close()
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        try:
            (out / ".tmp").rmdir()
        except OSError:  # another run is still using it
            pass
    write_metadata(out, plans)
    counts = {label: {split: sum(p.label == label and p.split == split for p in plans) for split in SPLITS}
              for label in CLASSES}
    return {
        "out": str(out), "videos": len(plans), "rendered": len(todo), "skipped": len(plans) - len(todo),
        "per_class_split": counts,
        "carried": {name: sum(getattr(p, name) for p in plans) for name in CHANNELS},
        "seconds": time.perf_counter() - started,
    }


if __name__ == "__main__":
    from vemo.demo.cli import main

    sys.exit(main())
