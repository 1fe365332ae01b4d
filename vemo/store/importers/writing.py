"""The loop every importer shares: clean each source video and write it through FeatureStoreWriter.

Writes are the store's own (atomic shards, resumable): a rerun into the same store skips videos
already there and retries the ones recorded as failed; a store made with other settings is refused
by the writer. A file that cannot be read, or is refused as an unsafe pickle, becomes a failed record
naming the file, and the import goes on with the next one.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from vemo.errors import DataError
from vemo.io import file_sha256
from vemo.store.format import ModalitySpec
from vemo.store.importers.features import CleanVideo, ReleasedKey, clean_video
from vemo.store.safe_pickle import UnsafePickleError
from vemo.store.writer import FeatureStoreWriter

IMPORTER_VERSION = 1


@dataclass
class SourceVideo:
    """One video of a release: its id, where it comes from, and how to read its feature dict."""

    id: str
    source: str
    load: Callable[[], Mapping[str, Any]]   # raises DataError when the file cannot be used
    file: Path | None = None                # its own file (hashed into the record), if it has one


@dataclass
class ImportReport:
    store: Path
    format: str
    source: Path
    nonfinite_policy: str
    seen: int = 0
    imported: int = 0                       # written with features (ok or partial)
    partial: int = 0                        # ... of which some modality failed (NaN/inf, bad shape)
    already: int = 0                        # in the store from an earlier run, skipped
    failed: Counter = field(default_factory=Counter)         # why -> videos recorded as failed
    problems: list[str] = field(default_factory=list)        # "source: what" lines
    zero_rows: Counter = field(default_factory=Counter)      # modality -> all-zero rows dropped
    all_zero: Counter = field(default_factory=Counter)       # modality -> videos where nothing was left
    nonfinite: list[tuple[str, str]] = field(default_factory=list)   # (source, released key)
    unknown_keys: Counter = field(default_factory=Counter)   # key -> videos carrying it (not imported)
    unsafe: int = 0
    extra_outputs: list[str] = field(default_factory=list)   # labels, classes, splits written


def store_specs(keys: Mapping[str, ReleasedKey], format_name: str, source: Path, dtype: str
                ) -> dict[str, ModalitySpec]:
    """The manifest entries: vemo's modality names, each recording where it was imported from."""
    return {k.modality: ModalitySpec(dim=k.dim, kind=k.kind, dtype=dtype, extractor={
        "name": f"import:{format_name}", "key": k.key, "model": k.model, "source": str(source),
        "importer_version": IMPORTER_VERSION}) for k in keys.values()}


def write_videos(videos: Iterable[SourceVideo], total: int, out: Path, keys: Mapping[str, ReleasedKey],
                 report: ImportReport, specs: Mapping[str, ModalitySpec], metadata: Mapping[str, Any],
                 progress: bool = True) -> ImportReport:
    from tqdm import tqdm

    dtype = next(iter(specs.values())).dtype
    writer = FeatureStoreWriter(out, specs, metadata=metadata)
    with writer, tqdm(total=total, desc=f"importing {report.format}", unit="video", file=sys.stderr,
                      dynamic_ncols=True, disable=not progress) as bar:
        for video in videos:
            report.seen += 1
            _import_one(writer, video, keys, dtype, report)
            bar.update(1)
            bar.set_postfix_str(f"{sum(report.failed.values())} failed", refresh=False)
    return report


def _import_one(writer: FeatureStoreWriter, video: SourceVideo, keys: Mapping[str, ReleasedKey],
                dtype: str, report: ImportReport) -> None:
    replace = False
    if writer.done(video.id):
        previous = writer.record(video.id)
        if previous is None:  # buffered in this very run: the source lists the id twice
            report.problems.append(f"{video.source}: video id {video.id!r} appears twice; kept the first")
            return
        if previous.get("status") != "failed":
            report.already += 1
            return
        replace = True  # failed last time (a bad file since replaced?): try again
    common = {"source": video.source, "replace": replace}

    def fail(kind: str, reason: str, states: Mapping[str, str] | None = None) -> None:
        report.failed[kind] += 1
        report.problems.append(reason if reason.startswith(video.source) else f"{video.source}: {reason}")
        writer.add_failure(video.id, reason, extra={"modalities": dict(states or {}),
                                                    "importer_version": IMPORTER_VERSION}, **common)

    try:
        raw = video.load()
        sha = file_sha256(video.file) if video.file is not None else ""
    except UnsafePickleError as e:
        report.unsafe += 1
        return fail("refused as unsafe pickles", str(e))
    except (DataError, OSError) as e:
        return fail("unreadable", str(e))
    if not isinstance(raw, Mapping):
        return fail("unreadable", f"holds a {type(raw).__name__}, not a dict of features")

    clean: CleanVideo = clean_video(raw, keys, dtype)
    report.unknown_keys.update(clean.unknown)
    for m, n in clean.zero_rows.items():
        report.zero_rows[m] += n
    for m, state in clean.states.items():
        if state.endswith("only all-zero rows"):
            report.all_zero[m] += 1
    report.nonfinite.extend((video.source, key) for key in clean.nonfinite)
    problems = "; ".join(clean.problems)
    if clean.nonfinite and report.nonfinite_policy == "skip-video":
        return fail("NaN/inf values (policy: skip the video)", problems, clean.states)
    if not clean.has_tokens:
        reason = problems or "no features: every modality is missing, empty or all zeros"
        return fail("no usable features", reason, clean.states)
    if problems:
        report.problems.append(f"{video.source}: {problems}")
    status = "partial" if clean.failed else "ok"
    writer.add(video.id, clean.features, sha256=sha, status=status,
               extra={"modalities": clean.states, "importer_version": IMPORTER_VERSION}, **common)
    report.imported += 1
    report.partial += int(status == "partial")
