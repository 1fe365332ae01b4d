"""Feature extraction speed: real-time factors of decoding, of each extractor, and of the whole profile.

The real-time factor (RTF) is seconds of video processed per wall-clock second: 6x means an hour of
video takes ten minutes. Videos are generated demo clips (speech, on-screen text, colours, sounds;
``vemo.data.demo_videos``) unless ``--videos DIR`` points at your own.

    python benchmarks/bench_extract.py                 # 24 clips of 5 s at 640x360, 24 fps
    python benchmarks/bench_extract.py --quick         # smoke run
    python benchmarks/bench_extract.py --videos ~/clips --profile offline

Three measurements, each repeated (median reported):
1. decoding alone (``vemo.extract.decode.decode`` with the profile's settings, one process);
2. each extractor alone on already-decoded videos, batches of ``--video-batch`` videos (model
   loading excluded, reported separately);
3. the whole profile through ``python -m vemo.extract``'s code path (DataLoader decoding workers +
   every extractor + store writes), model loading excluded; peak RSS of the process and its workers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import children_peak_rss, log, mib, print_header, print_table, rss_peak  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, default=None, help="a folder of your own videos (default: generate demo clips)")
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
    from omegaconf import OmegaConf

    from vemo.config import CONFIG_DIR
    return OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "extract" / f"{name}.yaml"), resolve=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    print_header("feature extraction: real-time factors", threads=torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="vemo-bench-extract-") as tmp:
        folder = args.videos
        if folder is None:
            from vemo.data.demo_videos import generate_demo_videos
            width, height = (int(x) for x in args.size.split("x"))
            log(f"generating {args.num_videos} demo clips of {args.seconds:g} s at {args.size}, {args.fps} fps ...")
            generate_demo_videos(Path(tmp) / "demo", num_videos=args.num_videos, seconds=args.seconds,
                                 size=(width, height), fps=args.fps, progress=False)
            folder = Path(tmp) / "demo" / "videos"
        return run(args, folder, Path(tmp))


def run(args: argparse.Namespace, folder: Path, tmp: Path) -> int:
    from vemo.extract.decode import decode
    from vemo.extract.extraction import run_extraction
    from vemo.extract.inputs import find_videos
    from vemo.extract.runner import DecodeSettings, build_extractors, decode_settings_for, run_extractor

    profile = profile_config(args.profile)
    options = {m: o for m, o in profile["extractors"].items() if m not in args.skip}
    videos = find_videos(folder)
    print(f"videos    : {len(videos)} files in {folder}; profile {args.profile}: "
          + ", ".join(f"{m}={o['name']}" for m, o in options.items()))

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
    # -- 2. each extractor on decoded videos
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
    del decoded
    # -- 3. the whole profile through the command's code path
    whole = []
    for r in range(args.repeats):
        log(f"  whole profile repeat {r + 1}/{args.repeats}")
        cfg = {"input": str(folder), "out": str(tmp / f"store-{r}"), "labels": None, "modalities": None,
               "num_frames": settings.num_frames, "fps": None, "max_side": settings.max_side,
               "max_audio_seconds": None, "device": "cpu", "processes": 1,
               "decode_workers": args.decode_workers, "video_batch": args.video_batch, "threads": None,
               "commit_every": 16, "part_size": 2048, "retry_failed": False, "strict": False,
               "extract": {"name": args.profile, "extractors": options}}
        result = run_extraction(cfg)
        whole.append(result.wall_seconds)
    med = statistics.median(whole)
    rows.append([f"whole {args.profile} profile", f"{med:.2f}", f"{total_seconds / med:.1f}x",
                 f"{sum(load_seconds.values()):.1f}"])
    print_table(["stage", "wall s (median)", "real-time factor", "model load s"], rows, align="lrrr")
    print(f"\npeak RSS  : this process {mib(rss_peak())} MiB, largest child (decode worker) "
          f"{mib(children_peak_rss())} MiB")
    print(f"repeats   : {args.repeats}; video batch {args.video_batch}; decode workers {args.decode_workers} "
          "(whole profile only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
