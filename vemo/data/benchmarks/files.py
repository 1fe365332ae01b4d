"""Readers of the benchmarks' official files: class index, split lists, blacklists, label tables and
split files. Lines are numbered from 1 so that every problem names its file and line.

Formats (text is UTF-8, a byte-order mark is ignored, blank lines and ``#`` comments are skipped):

- ``classInd.txt``: ``1 anger`` per line, 1-based index then class name.
- ``trainlist01.txt`` / ``testlist01.txt``: ``anger/1000 1`` per line: the video (class folder /
  video id, an extension is allowed) and, optionally, its 1-based class index.
- blacklist: one video per line, as the lists write it or as the store names it; more words on a
  line are ignored.
- label table (CSV, or tab-separated): a header naming an id column and a labels column; several
  labels in one cell are separated by ``|``, ``,`` or ``;``, and a Python-style list
  ``['Drama', 'History']`` is read too.
- split file: JSON ``{"train": [...], "val": [...], "test": [...]}`` (``trn``/``tst`` are read as
  train/test), or a folder with ``train.txt``, ``val.txt``, ``test.txt``.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Iterator, Sequence

from vemo.data.labels import TEXT_ENCODING
from vemo.errors import ConfigError, DataError

LABEL_SEPARATORS = re.compile(r"[|,;]")
SPLIT_ALIASES = {"train": "train", "trn": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "tst": "test", "testing": "test"}


def existing_file(path: str | Path | None, option: str) -> Path:
    if path is None:
        raise ConfigError(f"{option} is required: give the file (or the folder that holds it)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{option}={path}: no such file")
    return p


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line with content; ``#`` starts a comment."""
    try:
        text = path.read_text(encoding=TEXT_ENCODING)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield number, line


def name_key(name: str) -> str:
    """Class names compare without case, spaces, hyphens or underscores (``Sci-Fi`` = ``scifi``)."""
    return re.sub(r"[\s_\-]+", "", name.casefold())


class ClassNames:
    """A benchmark's classes, in order, and the lookup of a name as files spell it."""

    def __init__(self, classes: Sequence[str]):
        self.names = list(classes)
        self._index = {name_key(c): c for c in self.names}

    def find(self, name: str) -> str | None:
        return self._index.get(name_key(name))

    def __len__(self) -> int:
        return len(self.names)


def read_class_index(path: Path, expected: Sequence[str]) -> list[str]:
    """The classes of ``classInd.txt`` in index order, spelled as ``expected`` spells them.

    The file defines the label set, so any problem in it stops the preparation.
    """
    known = ClassNames(expected)
    by_index: dict[int, str] = {}
    for number, line in numbered_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}:{number}: expected '<index> <class>' (e.g. '1 {expected[0]}'), got {line!r}")
        index, name = int(parts[0]), parts[1]
        canonical = known.find(name)
        if canonical is None:
            raise DataError(f"{path}:{number}: {name!r} is not one of the classes {', '.join(expected)}")
        if index in by_index or canonical in by_index.values():
            raise DataError(f"{path}:{number}: index {index} or class {name!r} is listed twice")
        by_index[index] = canonical
    if sorted(by_index) != list(range(1, len(expected) + 1)) or len(by_index) != len(expected):
        raise DataError(f"{path} must number the {len(expected)} classes {', '.join(expected)} from 1 to "
                        f"{len(expected)}; it lists {len(by_index)} with indices {sorted(by_index)}")
    return [by_index[i] for i in sorted(by_index)]


def parse_list_line(line: str) -> tuple[str, int | None] | None:
    """``anger/1000 1`` -> ("anger/1000", 1); ``anger/1000`` -> ("anger/1000", None); None if neither."""
    parts = line.split()
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2 and re.fullmatch(r"[+-]?\d+", parts[1]):
        return parts[0], int(parts[1])
    return None


def read_blacklist(path: Path) -> list[tuple[int, str]]:
    return [(number, line.split()[0]) for number, line in numbered_lines(path)]


def split_labels(cell: str) -> list[str]:
    """``Drama|History``, ``Drama, History``, ``['Drama', 'History']`` -> ["Drama", "History"]."""
    cell = cell.strip()
    if cell.startswith("[") and cell.endswith("]"):
        cell = cell[1:-1]
    names = [n.strip().strip("'\"").strip() for n in LABEL_SEPARATORS.split(cell)]
    return [n for n in names if n]


def read_label_table(path: Path, id_columns: Sequence[str], label_columns: Sequence[str]
                     ) -> tuple[list[str], str, list[tuple[int, dict[str, str] | None, str]]]:
    """The rows of a label table: (candidate id columns present, the labels column, rows).

    Each row is (line number, {column: value} or None when the row does not parse, the raw line).
    A table without a header naming a labels column is refused: its meaning would be a guess.
    """
    try:
        text = path.read_text(encoding=TEXT_ENCODING)
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}") from None
    lines = text.splitlines()
    header_at = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")), None)
    if header_at is None:
        raise DataError(f"{path} is empty")
    delimiter = "\t" if "\t" in lines[header_at] else ","
    reader = csv.reader(lines[header_at:], delimiter=delimiter)
    header = [h.strip().casefold() for h in next(reader)]
    ids = [c for c in id_columns if c in header]
    labels = next((c for c in label_columns if c in header), None)
    if not ids or labels is None:
        raise DataError(f"{path}:{header_at + 1}: the header must name an id column ({' or '.join(id_columns)}) "
                        f"and a labels column ({' or '.join(label_columns)}); found {header}")
    rows = []
    for cells in reader:
        number = header_at + reader.line_num
        if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
            continue
        if len(cells) > len(header) and header[-1] == labels:  # id,Drama,History: unquoted labels at the end
            cells = cells[:len(header) - 1] + [",".join(cells[len(header) - 1:])]
        raw = delimiter.join(cells)
        rows.append((number, dict(zip(header, (c.strip() for c in cells))) if len(cells) == len(header) else None,
                     raw))
    return ids, labels, rows


def read_split_file(path: Path, option: str) -> dict[str, list[tuple[str, int | None, str]]]:
    """{train|val|test: [(source, line or None, raw id)]} from a JSON file or a folder of .txt files."""
    out: dict[str, list[tuple[str, int | None, str]]] = {"train": [], "val": [], "test": []}
    if path.is_dir():
        for name in out:
            f = path / f"{name}.txt"
            if not f.is_file():
                raise ConfigError(f"{option}={path}: the folder has no {name}.txt")
            out[name] = [(str(f), number, line.split()[0]) for number, line in numbered_lines(f)]
        return out
    if not path.is_file():
        raise ConfigError(f"{option}={path}: no such file or folder")
    text = path.read_text(encoding=TEXT_ENCODING)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with train, val and test lists")
    lines_of: dict[str, list[int]] = {}  # where each id is written, in order, so problems can name a line
    for number, line in enumerate(text.splitlines(), start=1):
        for value in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
            lines_of.setdefault(value, []).append(number)
    for key, ids in data.items():
        name = SPLIT_ALIASES.get(str(key).casefold())
        if name is None:
            raise DataError(f"{path}: unknown split {key!r}; expected train, val and test (or trn, val, tst)")
        if not isinstance(ids, list) or not all(isinstance(v, (str, int)) for v in ids):
            raise DataError(f"{path}: {key!r} must be a list of video ids")
        out[name] += [(str(path), (lines_of.get(str(v)) or [None]).pop(0), str(v)) for v in ids]
    missing = [name for name, ids in out.items() if not ids]
    if missing:
        raise DataError(f"{path}: no {' and no '.join(missing)} ids: a split file must list train, val and test")
    return out
