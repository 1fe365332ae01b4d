"""How the ids written in a benchmark's files map to the ids of a feature store.

Official lists write a video as ``anger/1000`` (class folder / video), sometimes with its file
extension; a store made with ``python -m vemo.extract`` names it by its path below the input folder,
which may or may not keep the class folder. A source's ids are matched in one way for the whole
source, the way that finds the most of them in the store: as written, without the video file
extension, or by file name alone (``anger/1000.mp4`` -> ``1000``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from vemo.errors import DataError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg",
                              ".3gp", ".ogv", ".ts"})


def strip_extension(raw: str) -> str:
    path = PurePosixPath(raw)
    return str(path.with_suffix("")) if path.suffix.lower() in VIDEO_EXTENSIONS else raw


def file_name(raw: str) -> str:
    return PurePosixPath(strip_extension(raw)).name


def class_folder(raw: str) -> str | None:
    """The folder a video sits in (``anger`` of ``anger/1000``), or None for a bare id."""
    parts = PurePosixPath(raw).parts
    return parts[-2] if len(parts) > 1 else None


@dataclass(frozen=True)
class IdForm:
    """One way of matching: ``key`` turns a written id into what is looked up, ``by_name`` says
    whether it is looked up among the store ids' file names instead of the ids themselves."""
    name: str
    key: Callable[[str], str]
    by_name: bool = False

    def shows(self, raw: str) -> str:
        return f"{self.key(raw)!r} ({self.name})"


FORMS = (IdForm("as written", lambda raw: raw),
         IdForm("without its file extension", strip_extension),
         IdForm("by file name", file_name, by_name=True))


class StoreIds:
    """The ids of a feature store (videos with features) and of its failed extractions."""

    def __init__(self, store: str | Path):
        from vemo.store import FeatureStore

        self.path = Path(store)
        st = FeatureStore(self.path)
        self.ids: set[str] = set(st.ids)
        self.failed: dict[str, str] = {r["id"]: str(r.get("reason") or "failed") for r in st.failed}
        self._by_name: dict[str, list[str]] = defaultdict(list)
        for vid in sorted(self.ids):
            self._by_name[file_name(vid)].append(vid)
        self._failed_by_name = {file_name(vid): vid for vid in self.failed}
        if not self.ids:
            why = (f"; all {len(self.failed)} of its videos failed extraction (e.g. "
                   f"{next(iter(self.failed))}: {next(iter(self.failed.values()))})" if self.failed else "")
            raise DataError(f"the feature store {self.path} holds no videos{why}")

    def _found(self, raw: str, form: IdForm) -> bool:
        key = form.key(raw)
        return len(self._by_name.get(key, ())) == 1 if form.by_name else key in self.ids

    def found_per_form(self, raws: Iterable[str]) -> list[int]:
        """How many of ``raws`` each form finds in the store."""
        unique = set(raws)
        return [sum(self._found(raw, form) for raw in unique) for form in FORMS]

    def choose_form(self, raws: Iterable[str], where: str, min_overlap: float) -> IdForm:
        """The form that finds the most of ``raws`` in the store (ties: the earlier, stricter one).

        Refuses when it finds none, or fewer than ``min_overlap`` of the smaller side (the files are
        meant for another store), naming every form tried.
        """
        unique = sorted(set(raws))
        if not unique:
            raise DataError(f"{where} lists no videos")
        found = self.found_per_form(unique)
        best = max(range(len(FORMS)), key=lambda i: (found[i], -i))
        smaller = min(len(unique), len(self.ids))
        if found[best] == 0 or found[best] / smaller < min_overlap:
            example = unique[0]
            tried = ", ".join(f"{form.shows(example)}: {n} found" for form, n in zip(FORMS, found))
            share = found[best] / smaller
            raise DataError(
                f"the {len(unique)} videos of {where} are not in the feature store {self.path}: {found[best]} found "
                f"({share:.0%} of the {'listed' if len(unique) <= len(self.ids) else 'stored'} videos; "
                f"data.min_label_overlap={min_overlap:g}). Tried each id, e.g. {tried}; store ids look like "
                f"{', '.join(repr(v) for v in sorted(self.ids)[:3])}. Is the store the one of this dataset?")
        return FORMS[best]

    def lookup(self, raw: str, form: IdForm) -> tuple[str | None, str, str]:
        """(store id, "", "") when found, else (None, reason, detail)."""
        key = form.key(raw)
        if form.by_name:
            hits = self._by_name.get(key, [])
            if len(hits) == 1:
                return hits[0], "", ""
            if hits:
                return None, "ambiguous_id", f"file name {key!r} is that of store ids {', '.join(hits[:3])}"
            failed = self._failed_by_name.get(key)
        else:
            if key in self.ids:
                return key, "", ""
            failed = key if key in self.failed else None
        if failed is not None:
            return None, "not_in_store", f"its extraction failed: {self.failed[failed]}"
        return None, "not_in_store", (f"looked up {form.name}" if key == raw else f"looked up as {key!r}, {form.name}")
