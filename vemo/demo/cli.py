"""``python -m vemo.demo.videos OUT``: generate the labelled demo videos (see ``vemo.demo.videos``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vemo.demo.plan import SPLITS
from vemo.demo.videos import generate_demo_videos
from vemo.errors import DataError


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 320x240, got {text!r}") from None
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vemo.demo.videos",
        description="Generate labelled demo videos (Ekman-6) whose class is planted in speech, on-screen "
                    "text, colour palette and sound.")
    parser.add_argument("out", type=Path, help="output folder (rerun to resume; existing clips are kept)")
    parser.add_argument("--num-videos", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=parse_size, default=(320, 240), help="WIDTHxHEIGHT, even numbers")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2, help="processes rendering clips")
    args = parser.parse_args(argv)
    try:
        summary = generate_demo_videos(args.out, args.num_videos, args.seconds, args.seed, args.size,
                                       args.fps, args.workers)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{summary['videos']} videos ({summary['rendered']} rendered, {summary['skipped']} already there) "
          f"in {summary['out']}/videos, metadata in labels.csv, classes.txt, splits/, channels.csv")
    print(f"{'class':10s} " + " ".join(f"{s:>5s}" for s in SPLITS))
    for label, by_split in summary["per_class_split"].items():
        print(f"{label:10s} " + " ".join(f"{by_split[s]:5d}" for s in SPLITS))
    carried = ", ".join(f"{name} {n}/{summary['videos']}" for name, n in summary["carried"].items())
    print(f"channels carrying the class: {carried} (the others show neutral content)")
    print(f"wall time {summary['seconds']:.1f} s")
    return 0
