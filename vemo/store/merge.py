"""Merge part stores into one store.

Each extraction process writes its own part (``<store>/parts/<name>/``, itself a complete store), so
two processes never rewrite one index. Merging copies the parts' videos into the main store shard by
shard (each commit atomic, as with any write) and removes a part only after everything in it is
committed. Merging is idempotent: a video whose record is already in the main store (same
``extracted_at`` and ``sha256``) is skipped, so a merge killed half-way is finished by running it again.
A lock file keeps two merges from running into the same store at once.
"""
from __future__ import annotations

import fcntl
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from vemo.store.format import INDEX, MANIFEST, WITH_FEATURES, ModalitySpec, StoreError, read_json
from vemo.store.reader import FeatureStore
from vemo.store.writer import FeatureStoreWriter

PARTS = "parts"
LOCK = ".merge.lock"


@dataclass
class MergeResult:
    store: Path
    parts: list[Path] = field(default_factory=list)
    added: int = 0       # videos new to the main store
    replaced: int = 0    # videos whose older record the part superseded
    skipped: int = 0     # already merged (an earlier, interrupted merge)


def part_dirs(store: str | Path) -> list[Path]:
    """The part stores under ``store/parts`` that hold a manifest (others are still being created)."""
    root = Path(store) / PARTS
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / MANIFEST).is_file())


@contextmanager
def store_lock(store: Path) -> Iterator[None]:
    store.mkdir(parents=True, exist_ok=True)
    with open(store / LOCK, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _same_record(a: dict, b: dict) -> bool:
    return (a.get("extracted_at") == b.get("extracted_at") and a.get("sha256") == b.get("sha256")
            and a.get("status") == b.get("status"))


def merge_parts(store: str | Path, parts: list[str | Path] | None = None, *, remove: bool = True,
                shard_size: int = 512) -> MergeResult:
    """Merge ``parts`` (default: every part under ``store/parts``) into ``store``."""
    store = Path(store)
    with store_lock(store):
        chosen = [Path(p) for p in parts] if parts is not None else part_dirs(store)
        result = MergeResult(store=store, parts=chosen)
        if not chosen:
            return result
        for part in chosen:
            if not (part / MANIFEST).is_file():
                raise StoreError(f"{part} is not a feature store (no {MANIFEST}); nothing merged from it")
        first = read_json(chosen[0] / MANIFEST, "manifest")
        modalities = {n: ModalitySpec.from_json(s) for n, s in first["modalities"].items()}
        writer = FeatureStoreWriter(store, modalities, shard_size=shard_size,
                                    metadata=first.get("metadata"))
        with writer:
            for part in chosen:
                _merge_one(writer, part, result)
        if remove:
            for part in chosen:
                shutil.rmtree(part, ignore_errors=True)
            parts_root = store / PARTS
            if parts_root.is_dir() and not any(parts_root.iterdir()):
                parts_root.rmdir()
        return result


def _merge_one(writer: FeatureStoreWriter, part: Path, result: MergeResult) -> None:
    reader = FeatureStore(part)
    if reader.modalities != writer.modalities:
        raise StoreError(f"{part} holds features made differently from {writer.root} "
                         "(modalities, dims or extractor settings differ); not merged")
    records = read_json(part / INDEX, "index")["videos"] if (part / INDEX).is_file() else []
    for rec in records:
        vid = rec["id"]
        existing = writer.record(vid)
        if existing is not None and _same_record(existing, rec):
            result.skipped += 1
            continue
        replace = existing is not None
        extra = {k: v for k, v in rec.items()
                 if k not in ("id", "source", "sha256", "duration", "status", "reason", "shard", "row")}
        if rec.get("status") in WITH_FEATURES:
            features = {m: reader.features(vid, m) for m in writer.modalities}
            writer.add(vid, features, source=rec.get("source", ""), sha256=rec.get("sha256", ""),
                       duration=rec.get("duration"), side=reader.side(vid), status=rec["status"],
                       extra=extra, replace=replace)
        else:
            writer.add_failure(vid, rec.get("reason") or "failed", source=rec.get("source", ""),
                               sha256=rec.get("sha256", ""), extra=extra, replace=replace)
        result.replaced += int(replace)
        result.added += int(not replace)
