"""The split protocols the benchmarks publish: official train/test lists with a validation share
carved from train, seeded stratified train/test draws, and an id-ordered cut."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vemo.data.benchmarks.files import ClassNames, numbered_lines, parse_list_line
from vemo.data.benchmarks.problems import Tally
from vemo.data.benchmarks.store_ids import IdForm, StoreIds, class_folder, file_name, strip_extension


def _rounded(x: float) -> int:
    return int(np.floor(x + 0.5))  # half up: Python's round() sends 2.5 to 2


def stratified_pick(labels: dict[str, str], fraction: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """(kept, picked): ``fraction`` of each class, drawn by ``rng``; every class keeps at least one."""
    by_class: dict[str, list[str]] = {}
    for vid in sorted(labels):
        by_class.setdefault(labels[vid], []).append(vid)
    kept, picked = [], []
    for name in sorted(by_class):
        members = by_class[name]
        order = rng.permutation(len(members))
        n = min(_rounded(fraction * len(members)), len(members) - 1)
        picked += [members[j] for j in order[:n]]
        kept += [members[j] for j in order[n:]]
    return sorted(kept), sorted(picked)


def ordered_split(ids: Sequence[str], fractions: Sequence[float]) -> dict[str, list[str]]:
    """Sorted ids cut in order: the first share is train, the last test, the rest val."""
    ordered = sorted(ids)
    n_train = _rounded(len(ordered) * fractions[0])
    n_test = _rounded(len(ordered) * fractions[2])
    n_test = min(n_test, len(ordered) - n_train)
    return {"train": ordered[:n_train], "val": ordered[n_train:len(ordered) - n_test],
            "test": ordered[len(ordered) - n_test:]}


@dataclass
class Listed:
    """One line of an official list: where it is, the video as written, its class index if given."""
    split: str
    source: Path
    line: int
    raw: str
    index: int | None


def read_lists(lists: Sequence[tuple[str, Path]], tally: Tally) -> list[Listed]:
    """Every line of the (split, list file) pairs; a line that does not parse is tallied."""
    out = []
    for split, path in lists:
        for number, text in numbered_lines(path):
            parsed = parse_list_line(text)
            if parsed is None:
                tally.skip("unparsable", split, path, number, text, "expected '<class folder>/<video> <class index>'")
                continue
            out.append(Listed(split, path, number, *parsed))
    return out


def class_of(entry: Listed, classes: ClassNames) -> tuple[str | None, str, str]:
    """The class of a list line from its 1-based index and its class folder: (class, reason, detail)."""
    folder = class_folder(strip_extension(entry.raw))
    by_folder = classes.find(folder) if folder else None
    by_index = None
    if entry.index is not None:
        if not 1 <= entry.index <= len(classes):
            return None, "unknown_class", f"class index {entry.index} is not in 1..{len(classes)}"
        by_index = classes.names[entry.index - 1]
    if by_index and by_folder and by_index != by_folder:
        return None, "conflicting_label", f"folder {folder!r} but class index {entry.index} ({by_index})"
    if by_index or by_folder:
        return by_index or by_folder, "", ""
    if folder:
        return None, "unknown_class", f"folder {folder!r} is not a class and the line gives no class index"
    return None, "empty_label", "no class index and no class folder"


def labelled_from_lists(entries: Sequence[Listed], classes: ClassNames, store: StoreIds, form: IdForm,
                        tally: Tally, blacklist: dict[str, tuple[str, int]] | None = None,
                        blacklist_splits: Sequence[str] = ()) -> tuple[dict[str, dict[str, str]], set[str]]:
    """{split: {store id: class}} of the list lines that survive every check, in this order: the
    class, a duplicate, the blacklist (for ``blacklist_splits``), the store. Also returns the
    blacklist entries that matched a line."""
    out: dict[str, dict[str, str]] = {}
    seen: dict[str, Listed] = {}
    used_blacklist: set[str] = set()
    for e in entries:
        out.setdefault(e.split, {})
        name, reason, detail = class_of(e, classes)
        if name is None:
            tally.skip(reason, e.split, e.source, e.line, e.raw, detail)
            continue
        key = form.key(e.raw)
        if key in seen:
            first = seen[key]
            then = class_of(first, classes)[0]
            tally.skip("duplicate", e.split, e.source, e.line, e.raw,
                       f"already listed at {first.source.name}:{first.line}" + ("" if then == name else f" as {then}"))
            continue
        seen[key] = e
        if blacklist and e.split in blacklist_splits:
            hit = next((k for k in (e.raw, strip_extension(e.raw), file_name(e.raw)) if k in blacklist), None)
            if hit is not None:
                used_blacklist.add(hit)
                src, line = blacklist[hit]
                tally.skip("blacklisted", e.split, e.source, e.line, e.raw, f"listed in {src}:{line}")
                continue
        vid, reason, detail = store.lookup(e.raw, form)
        if vid is None:
            tally.skip(reason, e.split, e.source, e.line, e.raw, detail)
            continue
        if blacklist and e.split in blacklist_splits and vid in blacklist:
            used_blacklist.add(vid)
            src, line = blacklist[vid]
            tally.skip("blacklisted", e.split, e.source, e.line, e.raw, f"listed in {src}:{line} as {vid!r}")
            continue
        out[e.split][vid] = name
    return out, used_blacklist
