"""Atomic file writes and JSON files shared by every stage (store index, run metrics, sweep records, labels)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from vemo.errors import DataError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync it, then rename over ``path``: a reader sees
    the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_if_changed(path: str | Path, text: str, refuse_other: bool = False) -> bool:
    """Atomically replace ``path`` with ``text`` unless it already holds exactly that; True when
    written. Processes preparing the same data at once (DDP ranks, sweep workers) write the same
    bytes, so whichever lands last changes nothing. ``refuse_other``: a file already there with
    other content is a ``DataError``, not overwritten (an importer never replaces a user's file)."""
    path, data = Path(path), text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    else:
        if refuse_other:
            raise DataError(f"{path} already exists with other content; remove it or write elsewhere")
    atomic_write_bytes(path, data)
    return True


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """CSV with ``\n`` line ends, as every table vemo writes."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def atomic_write_json(path: str | Path, data: Any, default: Any = None) -> None:
    """Write JSON atomically (``atomic_write_bytes``). ``default`` converts values JSON cannot hold
    (``str`` for records that may carry paths or dates)."""
    text = json.dumps(data, indent=1, ensure_ascii=False, default=default)
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path, what: str = "file", error: type[Exception] = DataError) -> Any:
    """Parse a JSON file; a file that is not valid JSON raises ``error`` naming ``what`` and the path."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise error(f"{what} {path} is not valid JSON: {e}") from None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file, read in chunks (weights and videos can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
