"""python -m vemo.store merge STORE [PART ...] | info STORE | import FORMAT SRC out=STORE"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from vemo.cli import reported_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vemo.store", description="Feature store tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="merge part stores (default: STORE/parts/*) into STORE")
    m.add_argument("store")
    m.add_argument("parts", nargs="*", help="part store folders (default: every one under STORE/parts)")
    m.add_argument("--keep", action="store_true", help="keep the parts after merging")
    i = sub.add_parser("info", help="modalities, video counts and failures of a store")
    i.add_argument("store")
    _add_import_parser(sub)
    args = parser.parse_args(argv)
    with reported_errors():
        if args.command == "import":
            return _import(args, sub.choices["import"])
        if args.command == "merge":
            from vemo.store.merge import merge_parts
            r = merge_parts(args.store, args.parts or None, remove=not args.keep)
            print(f"merged {len(r.parts)} parts into {r.store}: {r.added} new, {r.replaced} replaced, "
                  f"{r.skipped} already there")
            return 0
        return _info(args.store)
    return 1


IMPORT_SETTINGS = {"out": "the store to write (created, or reopened to resume)",
                   "ids": "vemoclap folders: relative (anger/1000, default) or stem (1000)",
                   "dtype": "float16 (default) or float32",
                   "nonfinite": "a feature with NaN/inf: drop-modality (default) or skip-video",
                   "modalities": "import only these, comma-separated (default: all five)",
                   "labels": "movienet: folder for labels.csv and classes.txt (default: beside the store)",
                   "splits": "movienet: a splits.json (trn/val/tst) to write as splits/*.txt"}


def _add_import_parser(sub: argparse._SubParsersAction) -> None:
    from vemo.store.importers import FORMATS

    formats = "\n".join(f"  {f.name:9s} {f.description}" for f in FORMATS.values())
    settings = "\n".join(f"  {k + '=...':15s}{v}" for k, v in IMPORT_SETTINGS.items())
    p = sub.add_parser(
        "import", help="turn a published feature release into a store",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Import released features into a vemo feature store, renamed to vemo's modalities "
                    "(clip->frames, beats->audio, face_emotion->faces, asr_sentiment->speech, "
                    "ocr_sentiment->ocr). All-zero rows are padding and become absent tokens.",
        epilog=f"formats:\n{formats}\n\nsettings (KEY=VALUE, or --KEY VALUE):\n{settings}\n\n"
               "example: python -m vemo.store import movienet features.pkl out=data/movienet/store")
    p.add_argument("format", choices=list(FORMATS), metavar="FORMAT", help=", ".join(FORMATS))
    p.add_argument("src", metavar="SRC", help="the release: a folder of per-video files or one pickle/torch file")
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="out=STORE and the settings below")
    for key in IMPORT_SETTINGS:
        p.add_argument(f"--{key}", dest=f"opt_{key}", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _import_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, str]:
    given = {k: getattr(args, f"opt_{k}") for k in IMPORT_SETTINGS if getattr(args, f"opt_{k}") is not None}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or key not in IMPORT_SETTINGS:
            parser.error(f"{item!r} is not a setting; use KEY=VALUE with KEY one of {', '.join(IMPORT_SETTINGS)}")
        if given.get(key, value) != value:
            parser.error(f"{key} is given twice with different values")
        given[key] = value
    if not given.get("out"):
        parser.error("out=STORE is required: the feature store to write")
    return given


def _import(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from vemo.store.importers import import_release
    from vemo.store.importers.summary import summary_lines

    settings = _import_settings(args, parser)
    modalities = [m.strip() for m in settings.pop("modalities", "").split(",") if m.strip()] or None
    report = import_release(args.format, args.src, settings.pop("out"), modalities=modalities,
                            progress=not args.no_progress, **settings)
    print("\n".join(summary_lines(report)))
    return 1 if report.unsafe else 0


def _info(path: str) -> int:
    from vemo.store import FeatureStore

    store = FeatureStore(path)
    print(repr(store))
    for name, spec in sorted(store.modalities.items()):
        lengths = store.lengths(name)
        present = int((lengths > 0).sum())
        print(f"  {name:8s} {spec.kind:8s} dim {spec.dim:5d}  present in {present}/{len(store)} videos  "
              f"extractor {spec.extractor.get('name', '?')}")
    reasons = Counter(str(r.get("reason")) for r in store.failed)
    for reason, n in reasons.most_common(10):
        print(f"  failed x{n}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
