"""The lines an import prints at the end: what was imported, skipped and why, and where it went."""
from __future__ import annotations

from vemo.store.importers.writing import ImportReport

EXAMPLES = 10


def summary_lines(report: ImportReport) -> list[str]:
    from vemo.store.reader import FeatureStore

    failed = sum(report.failed.values())
    lines = [f"imported {report.imported} of {report.seen} videos ({report.partial} without some modality) "
             f"from {report.source} ({report.format})"]
    skipped = [f"{report.already} already in the store"] if report.already else []
    skipped += [f"{n} {why}" for why, n in sorted(report.failed.items())]
    lines.append("skipped: " + (", ".join(skipped) if skipped else "none"))
    if failed:
        lines.append("  (failed videos are recorded in the store's index with their reason; a rerun retries them)")
    if report.nonfinite:
        policy = ("the video is skipped" if report.nonfinite_policy == "skip-video"
                  else "that modality is left out of the video")
        lines.append(f"{len(report.nonfinite)} features held NaN/inf values, never stored ({policy}): "
                     + ", ".join(f"{src} [{key}]" for src, key in report.nonfinite[:EXAMPLES])
                     + (" ..." if len(report.nonfinite) > EXAMPLES else ""))
    dropped = [f"{m} {report.zero_rows[m]} rows" + (f" ({report.all_zero[m]} videos left without any)"
                                                    if report.all_zero[m] else "")
               for m in sorted(report.zero_rows) if report.zero_rows[m] or report.all_zero[m]]
    lines.append("all-zero rows dropped (padding, not data): " + (", ".join(dropped) or "none"))
    if report.unknown_keys:
        lines.append("keys not imported (not part of the format): " + ", ".join(
            f"{k} in {n} videos" for k, n in report.unknown_keys.most_common()))
    store = FeatureStore(report.store)
    total = len(store)
    lines.append(f"store {report.store.resolve()}: {total} videos with features, {len(store.failed)} failed")
    for name, spec in sorted(store.modalities.items()):
        present = int((store.lengths(name) > 0).sum()) if total else 0
        lines.append(f"  {name:7s} {spec.kind:8s} dim {spec.dim:4d}  present in {present}/{total} videos"
                     f"  (from {spec.extractor.get('key')!r})")
    for path in report.extra_outputs:
        lines.append(f"wrote {path}")
    if report.problems:
        lines.append(f"problems ({len(report.problems)}):")
        lines += [f"  {p}" for p in report.problems[:EXAMPLES]]
        if len(report.problems) > EXAMPLES:
            lines.append(f"  ... and {len(report.problems) - EXAMPLES} more (see the store's index.json)")
    if report.unsafe:
        lines.append(f"{report.unsafe} files were refused as unsafe pickles: nothing from them was run "
                     "and their videos are not in the store")
    return lines
