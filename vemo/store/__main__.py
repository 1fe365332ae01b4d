"""python -m vemo.store merge STORE [PART ...] | info STORE"""
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
    args = parser.parse_args(argv)
    with reported_errors():
        if args.command == "merge":
            from vemo.store.merge import merge_parts
            r = merge_parts(args.store, args.parts or None, remove=not args.keep)
            print(f"merged {len(r.parts)} parts into {r.store}: {r.added} new, {r.replaced} replaced, "
                  f"{r.skipped} already there")
            return 0
        return _info(args.store)
    return 1


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
