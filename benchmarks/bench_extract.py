"""Feature extraction speed: real-time factors of decoding, of each extractor, and of the whole profile.

The real-time factor (RTF) is seconds of video processed per wall-clock second: 6x means an hour of
video takes ten minutes. Videos are generated demo clips (speech, on-screen text, colours, sounds;
``vemo.demo.videos``), or with ``--clips footage`` composed clips that behave like real footage
(1080p to 360p, long-GOP H.264, a real face on every frame, speech throughout, subtitles), or any
folder of your own videos with ``--videos DIR``.

    python benchmarks/bench_extract.py                 # 24 clips of 5 s at 640x360, 24 fps
    python benchmarks/bench_extract.py --quick         # smoke run
    python benchmarks/bench_extract.py --clips footage # 4 footage-like clips, 105 s in all
    python benchmarks/bench_extract.py --videos ~/clips --profile offline

Three measurements, each repeated (median reported):
1. decoding alone (``vemo.extract.decode.decode`` with the profile's settings, one process);
2. each extractor alone on already-decoded videos, batches of ``--video-batch`` videos (model
   loading excluded, reported separately);
3. the whole profile: ``python -m vemo.extract`` run as a fresh process per repeat (DataLoader
   decoding workers + every extractor + store writes); its real-time factor excludes model loading,
   which is reported beside it, and the peak RSS is that of the command and its workers.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import log, mib, print_header, print_table, rss_peak  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, default=None, help="a folder of your own videos (default: generate clips)")
    p.add_argument("--clips", choices=("demo", "footage"), default="demo",
                   help="generated clips without --videos: demo (vemo.demo.videos) or footage (like real videos)")
    p.add_argument("--cache-dir", type=Path, default=Path("~/.cache/vemo"),
                   help="where --clips footage keeps its clips, composed once (default ~/.cache/vemo)")
    p.add_argument("--num-videos", type=int, default=None, help="demo clips to generate (default 24; 12 with --quick)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each demo clip (default 5)")
    p.add_argument("--size", default="640x360", help="demo clip size (default 640x360)")
    p.add_argument("--fps", type=int, default=24, help="demo clip frame rate (default 24)")
    p.add_argument("--profile", default="offline", help="extraction profile (configs/extract/<name>.yaml)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats, median reported (default 3; 1 with --quick)")
    p.add_argument("--video-batch", type=int, default=8)
    p.add_argument("--decode-workers", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], help="modalities to leave out")
    p.add_argument("--quick", action="store_true", help="small, fast smoke run")
    args = p.parse_args(argv)
    args.num_videos = args.num_videos or (12 if args.quick else 24)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def profile_config(name: str) -> dict:
    from vemo.extract.extraction import profile_extractors
    return {"extractors": profile_extractors(name)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    print_header("feature extraction: real-time factors", threads=torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="vemo-bench-extract-") as tmp:
        folder = args.videos
        if folder is None and args.clips == "footage":
            folder = footage_folder(args.cache_dir.expanduser(), Path(tmp) / "footage")
        elif folder is None:
            from vemo.demo.videos import generate_demo_videos
            width, height = (int(x) for x in args.size.split("x"))
            log(f"generating {args.num_videos} demo clips of {args.seconds:g} s at {args.size}, {args.fps} fps ...")
            generate_demo_videos(Path(tmp) / "demo", num_videos=args.num_videos, seconds=args.seconds,
                                 size=(width, height), fps=args.fps, progress=False)
            folder = Path(tmp) / "demo" / "videos"
        return run(args, folder, Path(tmp))


# what real footage has and the demo clips lack: sizes from phone to broadcast, long GOPs (a keyframe
# every ~8 s: decoding cannot seek to a sampled frame cheaply), a face on every frame, speech that never
# stops, subtitles changing every 2.5 s; preset medium, as a camera or an editor would write it
FOOTAGE = [  # (seconds, width, height)
    (20, 1920, 1080),
    (30, 1280, 720),
    (40, 854, 480),
    (15, 640, 360),
]
FOOTAGE_FPS, FOOTAGE_GOP = 30, 250


def footage_folder(cache: Path, folder: Path) -> Path:
    """The footage-like clips (composed once under ``cache``), copied into ``folder``."""
    import shutil

    from _predict_clips import talk_clip

    if shutil.which("espeak-ng") is None:
        raise SystemExit("--clips footage speaks its clips with espeak-ng, which is not installed "
                         "(apt-get install espeak-ng)")
    folder.mkdir(parents=True, exist_ok=True)
    for seconds, width, height in FOOTAGE:
        path, what = talk_clip(cache, seconds, (width, height), fps=FOOTAGE_FPS, gop=FOOTAGE_GOP,
                               subtitles=True, preset="medium")
        shutil.copy(path, folder / path.name)
    print(f"clips     : {what.split(':')[0]}s at {', '.join(f'{w}x{h} ({s} s)' for s, w, h in FOOTAGE)}, "
          f"{FOOTAGE_FPS} fps, a keyframe every {FOOTAGE_GOP} frames, subtitles")
    return folder


def whole_profile(args: argparse.Namespace, folder: Path, tmp: Path, repeat: int) -> dict:
    """One `python -m vemo.extract` run in a fresh process; its summary.json and peak RSS."""
    out = tmp / f"store-{repeat}"
    cmd = [sys.executable, "-m", "vemo.extract", f"input={folder}", f"out={out}", f"extract={args.profile}",
           f"video_batch={args.video_batch}", f"decode_workers={args.decode_workers}"]
    if args.skip:
        modalities = [m for m in profile_config(args.profile)["extractors"] if m not in args.skip]
        cmd.append(f"modalities=[{','.join(modalities)}]")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"python -m vemo.extract failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(next((out / "logs").glob("*/summary.json")).read_text())
    summary["command_wall"] = wall
    summary["peak_rss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return summary


def run(args: argparse.Namespace, folder: Path, tmp: Path) -> int:
    from vemo.extract.decode import decode
    from vemo.extract.inputs import find_videos
    from vemo.extract.jobs import DecodeSettings, decode_settings_for
    from vemo.extract.pool import build_extractors, run_extractor

    profile = profile_config(args.profile)
    options = {m: o for m, o in profile["extractors"].items() if m not in args.skip}
    videos = find_videos(folder)
    print(f"videos    : {len(videos)} files in {folder}; profile {args.profile}: "
          + ", ".join(f"{m}={o['name']}" for m, o in options.items()))

    # -- 3 first: the whole profile, each repeat a fresh `python -m vemo.extract` process
    runs = []
    for r in range(args.repeats):
        log(f"  whole profile repeat {r + 1}/{args.repeats}")
        runs.append(whole_profile(args, folder, tmp, r))

    # -- models: load once, timed
    load_seconds = {}
    extractors = build_extractors(options, "cpu")
    for m, ex in extractors.items():
        start = time.perf_counter()
        ex.ensure_loaded()
        load_seconds[m] = time.perf_counter() - start
    settings = decode_settings_for(extractors, DecodeSettings())

    # -- 1. decoding alone
    def decode_all():
        return [decode(v.path, v.id, num_frames=settings.num_frames, sample_rates=settings.sample_rates,
                       max_side=settings.max_side, need_frames=settings.need_frames) for v in videos]

    decode_times = []
    for r in range(args.repeats):
        start = time.perf_counter()
        decoded = decode_all()
        decode_times.append(time.perf_counter() - start)
    total_seconds = sum(v.duration for v in decoded)
    print(f"content   : {total_seconds:.1f} s of video in {len(decoded)} clips "
          f"({total_seconds / len(decoded):.1f} s each)\n")

    rows = [["decoding alone", f"{statistics.median(decode_times):.2f}",
             f"{total_seconds / statistics.median(decode_times):.1f}x", "-"]]
    # -- 2. each extractor on decoded videos, alone (all cores to itself)
    for m, ex in extractors.items():
        times = []
        for r in range(args.repeats):
            log(f"  {m} repeat {r + 1}/{args.repeats}")
            start = time.perf_counter()
            for k in range(0, len(decoded), args.video_batch):
                run_extractor(ex, decoded[k:k + args.video_batch])
            times.append(time.perf_counter() - start)
        med = statistics.median(times)
        rows.append([f"{m} ({options[m]['name']})", f"{med:.2f}", f"{total_seconds / med:.1f}x",
                     f"{load_seconds[m]:.1f}"])
    walls = sorted(r["wall_seconds"] for r in runs)
    med_run = next(r for r in runs if r["wall_seconds"] == walls[len(walls) // 2])
    rows.append([f"whole {args.profile} profile (python -m vemo.extract)", f"{med_run['wall_seconds']:.2f}",
                 f"{med_run['seconds_of_video'] / med_run['wall_seconds']:.1f}x", f"{med_run['load_seconds']:.1f}"])
    print_table(["stage", "wall s (median)", "real-time factor", "model load s"], rows, align="lrrr")
    print("\nwhole profile, every repeat: " + ", ".join(
        f"{r['real_time_factor']:.1f}x ({r['wall_seconds']:.1f} s + {r['load_seconds']:.1f} s loading, "
        f"{r['command_wall']:.1f} s for the whole command)" for r in runs))
    print(f"peak RSS  : python -m vemo.extract and its decoding worker {mib(runs[-1]['peak_rss'])} MiB "
          f"(largest process); this benchmark with every model loaded {mib(rss_peak())} MiB")
    print(f"repeats   : {args.repeats}; video batch {args.video_batch}; decode workers {args.decode_workers} "
          "(whole profile only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
